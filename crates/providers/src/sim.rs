//! The simulated model: a first-class provider that answers with the latency, token counts
//! and prices of a real model's profile, plans tool calls, and injects seeded errors.
//!
//! Every response says it is simulated ([`ProviderInfo::simulated`]). Randomness (jitter, error
//! injection) comes from a per-call generator seeded with `seed` and the call's index, so no
//! lock is shared between calls and a run with the same seed makes the same draws.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aether_contracts::{Role, SessionEvent, ToolCall, ToolDeclaration, ToolStatus};
use async_trait::async_trait;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::profiles::{Profile, ProfileSet};
use super::tokens::{self, Tokenizer};
use super::{DeltaSink, ModelError, ModelProvider, ModelRequest, ModelResponse, ProviderInfo, TokenUsage};

/// Kinds of failure the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimErrorKind {
    RateLimit,
    ServerError,
    Timeout,
}

/// Settings of the simulated model.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Multiplies every simulated delay; 0 means no delay at all.
    pub time_scale: f64,
    /// Replaces the profile's latency with this fixed one (still scaled by `time_scale`).
    pub fixed_latency: Option<Duration>,
    pub seed: u64,
    /// Share of calls (0..=1) that fail with one of `error_kinds`.
    pub error_rate: f64,
    pub error_kinds: Vec<SimErrorKind>,
    /// Tools called in the first response of a turn; `None` calls every tool of the agent.
    pub tool_calls_per_turn: Option<usize>,
    pub profiles: ProfileSet,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            time_scale: 1.0,
            fixed_latency: None,
            seed: 42,
            error_rate: 0.0,
            error_kinds: vec![
                SimErrorKind::RateLimit,
                SimErrorKind::ServerError,
                SimErrorKind::Timeout,
            ],
            tool_calls_per_turn: None,
            profiles: ProfileSet::builtin(),
        }
    }
}

struct Canned {
    text: Arc<str>,
    tokens: u32,
}

/// The simulated model provider.
pub struct SimulatedModel {
    info: ProviderInfo,
    config: SimConfig,
    calls: AtomicU64,
    /// Canned answer per profile, built (and its tokenizer loaded) on first use.
    canned: HashMap<String, OnceLock<Canned>>,
    /// The default profile's canned answer.
    canned_default: OnceLock<Canned>,
}

/// SplitMix64: a strong 64-bit mixer, used to derive per-call seeds.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const WORDS: &[&str] = &[
    "the",
    "account",
    "review",
    "shows",
    "a",
    "stable",
    "pattern",
    "of",
    "activity",
    "and",
    "no",
    "open",
    "issues",
    "require",
    "attention",
    "today",
    "customer",
    "records",
    "were",
    "checked",
    "against",
    "policy",
    "with",
    "consistent",
    "results",
    "across",
    "regions",
    "so",
    "we",
    "recommend",
    "proceeding",
    "as",
    "planned",
    "while",
    "monitoring",
    "exposure",
    "limits",
    "closely",
    "during",
    "quarter",
];

fn build_canned(profile: &Profile, seed: u64) -> Canned {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut text = String::from("[simulated]");
    let mut tokens = tokens::count(profile.tokenizer, &text);
    while tokens < profile.output_tokens {
        let n = rng.random_range(8..16);
        for i in 0..n {
            let w = WORDS[rng.random_range(0..WORDS.len())];
            text.push(' ');
            text.push_str(w);
            if i + 1 == n {
                text.push('.');
            }
        }
        tokens = tokens::count(profile.tokenizer, &text);
    }
    Canned {
        text: Arc::from(text),
        tokens,
    }
}

impl SimulatedModel {
    pub fn new(config: SimConfig) -> Self {
        let canned = config
            .profiles
            .names()
            .into_iter()
            .map(|n| (n.to_owned(), OnceLock::new()))
            .collect();
        Self {
            info: ProviderInfo {
                name: "simulated".to_owned(),
                simulated: true,
            },
            config,
            calls: AtomicU64::new(0),
            canned,
            canned_default: OnceLock::new(),
        }
    }

    fn canned(&self, profile_name: &str, profile: &Profile) -> &Canned {
        let seed = self.config.seed ^ splitmix64(profile_name.len() as u64);
        self.canned
            .get(profile_name)
            .unwrap_or(&self.canned_default)
            .get_or_init(|| build_canned(profile, seed))
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn scaled(&self, ms: f64) -> Duration {
        let ms = ms * self.config.time_scale;
        if ms > 0.0 && ms.is_finite() {
            Duration::from_secs_f64(ms / 1000.0)
        } else {
            Duration::ZERO
        }
    }

    /// Which tools the first response of a turn calls.
    fn plan_tools<'t>(&self, req: &ModelRequest<'t>) -> Vec<&'t Arc<ToolDeclaration>> {
        let tools = req.tools;
        if let Some(names) = req.metadata.get("sim_tools").and_then(|v| v.as_array()) {
            let wanted: Vec<&str> = names.iter().filter_map(|v| v.as_str()).collect();
            return tools
                .iter()
                .filter(|t| wanted.iter().any(|w| *w == &*t.full_name || *w == &*t.short_name))
                .collect();
        }
        let limit = req
            .metadata
            .get("sim_tool_calls")
            .and_then(|v| v.as_u64())
            .map(|n| n as usize)
            .or(self.config.tool_calls_per_turn);
        if limit.is_none() {
            if let Some(last) = req.history.last() {
                let text = last.message.text_content();
                let mentioned: Vec<_> = tools.iter().filter(|t| text.contains(&*t.short_name)).collect();
                if !mentioned.is_empty() {
                    return mentioned;
                }
            }
        }
        tools.iter().take(limit.unwrap_or(usize::MAX)).collect()
    }

    fn event_tokens(tokenizer: Tokenizer, e: &SessionEvent) -> u32 {
        e.tokens_with(|e| {
            let mut n = tokens::count(tokenizer, &e.message.text_content()) + 4;
            if let Some(calls) = e.message.tool_calls() {
                for c in calls {
                    n += tokens::count(tokenizer, &c.tool_name) + 3 * c.parameters.len() as u32 + 3;
                }
            }
            for r in &e.tool_results {
                n += tokens::count(tokenizer, &r.result_data.to_string()) + 3;
            }
            n
        })
    }

    fn injected_error(&self, rng: &mut SmallRng, profile: &Profile) -> Option<(ModelError, Duration)> {
        if self.config.error_rate <= 0.0
            || self.config.error_kinds.is_empty()
            || rng.random::<f64>() >= self.config.error_rate
        {
            return None;
        }
        let kind = self.config.error_kinds[rng.random_range(0..self.config.error_kinds.len())];
        Some(match kind {
            SimErrorKind::RateLimit => (
                ModelError::RateLimited {
                    retry_after_ms: Some(1000),
                },
                Duration::ZERO,
            ),
            SimErrorKind::ServerError => (
                ModelError::Server {
                    status: 500,
                    message: "simulated internal server error".into(),
                },
                self.scaled(profile.ttft_ms),
            ),
            SimErrorKind::Timeout => {
                let waited = self.scaled(profile.ttft_ms * 4.0);
                (ModelError::Timeout(waited), waited)
            }
        })
    }
}

impl SimulatedModel {
    /// Decides the whole answer (or the injected failure) and how long it takes, without waiting.
    fn plan(&self, req: &ModelRequest<'_>) -> Result<Planned, (ModelError, Duration)> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut rng = SmallRng::seed_from_u64(splitmix64(self.config.seed ^ splitmix64(call)));
        let (profile_name, profile) = self.config.profiles.lookup(&req.model.model);
        let tokenizer = profile.tokenizer;

        if let Some(failure) = self.injected_error(&mut rng, profile) {
            return Err(failure);
        }

        let last = req.history.last();
        let after_tools = last.is_some_and(|e| e.message.role == Role::Tool);
        let user_turn = last.is_some_and(|e| e.message.role == Role::User);

        let (text, tool_calls, completion_tokens) = if user_turn && !req.tools.is_empty() {
            let planned = self.plan_tools(req);
            if planned.is_empty() {
                let c = self.canned(profile_name, profile);
                (Arc::clone(&c.text), Vec::new(), c.tokens)
            } else {
                let mut completion = 0;
                let calls = planned
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| {
                        completion += t.call_tokens_with(|t| {
                            let args = serde_json::to_string(&t.sample_arguments).unwrap_or_default();
                            tokens::count(tokenizer, &t.full_name) + tokens::count(tokenizer, &args) + 4
                        });
                        ToolCall {
                            tool_name: t.full_name.to_string(),
                            parameters: t.sample_arguments.clone(),
                            tool_namespace: None,
                            call_id: Some(format!("call-{call:x}-{i}")),
                        }
                    })
                    .collect();
                (Arc::from(""), calls, completion)
            }
        } else if after_tools {
            let results = &last.map(|e| &*e.tool_results).unwrap_or_default();
            let mut text = String::with_capacity(64 + 24 * results.len());
            let ok = results.iter().filter(|r| r.status == ToolStatus::Success).count();
            let _ = write!(text, "[simulated] {ok} of {} tool calls succeeded:", results.len());
            for r in results.iter() {
                let _ = write!(text, " {} {};", r.tool_name, r.status);
            }
            text.push_str(" That completes the request.");
            let n = tokens::count(tokenizer, &text);
            (Arc::from(text), Vec::new(), n)
        } else if let Some(ack) = last.and_then(|e| acknowledge(&e.message)) {
            let c = self.canned(profile_name, profile);
            let text = format!("{ack} {}", c.text);
            let n = tokens::count(tokenizer, &text);
            (Arc::from(text), Vec::new(), n)
        } else {
            let c = self.canned(profile_name, profile);
            (Arc::clone(&c.text), Vec::new(), c.tokens)
        };

        // `max_tokens` bounds a text answer as it bounds a real model's (tool calls are not cut).
        let (text, completion_tokens, truncated) = match req.model.max_tokens {
            Some(max) if tool_calls.is_empty() && completion_tokens > max => {
                let (text, n) = truncate_to_tokens(&text, tokenizer, max.max(1));
                (text, n, true)
            }
            _ => (text, completion_tokens, false),
        };

        let prompt_tokens = u64::from(req.system.tokens_with(|t| tokens::count(tokenizer, t)))
            + req
                .history
                .iter()
                .map(|e| u64::from(Self::event_tokens(tokenizer, e)))
                .sum::<u64>();
        let completion_tokens = u64::from(completion_tokens.max(1));

        let latency_ms = match self.config.fixed_latency {
            Some(d) => d.as_secs_f64() * 1000.0,
            None => {
                let jitter = if profile.jitter_ms > 0.0 {
                    rng.random_range(-profile.jitter_ms..=profile.jitter_ms)
                } else {
                    0.0
                };
                (profile.ttft_ms + profile.per_token_ms * (completion_tokens.saturating_sub(1)) as f64 + jitter)
                    .max(0.0)
            }
        };
        let latency = self.scaled(latency_ms);
        // The first token's share of the whole: the profile's, for this answer's length. A fixed
        // latency keeps it, so a streamed answer takes the same total as a plain one.
        let nominal = profile.ttft_ms + profile.per_token_ms * completion_tokens.saturating_sub(1) as f64;
        let ttft = match self.config.fixed_latency {
            Some(_) if nominal > 0.0 => latency.mul_f64((profile.ttft_ms / nominal).clamp(0.0, 1.0)),
            Some(_) => Duration::ZERO,
            None => self.scaled(profile.ttft_ms).min(latency),
        };

        let cost_usd = prompt_tokens as f64 / 1000.0 * profile.prompt_price_per_1k
            + completion_tokens as f64 / 1000.0 * profile.completion_price_per_1k;
        let response = ModelResponse {
            text,
            tool_calls,
            usage: TokenUsage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
            },
            cost_usd,
            served_by: Arc::from(profile_name),
            truncated,
        };
        Ok(Planned {
            response,
            latency,
            ttft,
        })
    }
}

/// An answer decided in advance, with its timing.
struct Planned {
    response: ModelResponse,
    latency: Duration,
    /// Time to the first token: the profile's, or with a fixed latency the profile's share of it.
    ttft: Duration,
}

async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[async_trait]
impl ModelProvider for SimulatedModel {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn prepare(&self, model: &str) {
        let (name, profile) = self.config.profiles.lookup(model);
        self.canned(name, profile);
    }

    async fn generate(&self, req: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        match self.plan(&req) {
            Ok(p) => {
                pause(p.latency).await;
                Ok(p.response)
            }
            Err((e, waited)) => {
                pause(waited).await;
                Err(e)
            }
        }
    }

    /// Streams the text word by word: the first piece at the time to first token, the rest
    /// spread evenly up to the whole latency. Each piece is due at a time fixed from the start,
    /// so timer granularity never adds up: a streamed answer takes the latency a plain one does.
    async fn generate_stream(
        &self,
        req: ModelRequest<'_>,
        sink: &mut dyn DeltaSink,
    ) -> Result<ModelResponse, ModelError> {
        let start = tokio::time::Instant::now();
        let p = match self.plan(&req) {
            Ok(p) => p,
            Err((e, waited)) => {
                pause(waited).await;
                return Err(e);
            }
        };
        let text = Arc::clone(&p.response.text);
        if text.is_empty() {
            pause(p.latency).await;
            return Ok(p.response);
        }
        let pieces = text.split_inclusive(' ').count().max(1);
        let gap = (p.latency - p.ttft) / pieces as u32;
        for (i, piece) in text.split_inclusive(' ').enumerate() {
            due(start + p.ttft + gap * i as u32).await;
            sink.deliver(piece).await?;
        }
        due(start + p.latency).await;
        Ok(p.response)
    }
}

/// Waits until `at` (at once when it has passed).
async fn due(at: tokio::time::Instant) {
    if at > tokio::time::Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

/// The longest prefix of `text`, cut at a word, of at most `max` tokens, and its token count
/// (counted per word, as the answer is streamed).
fn truncate_to_tokens(text: &str, tokenizer: tokens::Tokenizer, max: u32) -> (Arc<str>, u32) {
    let mut end = 0;
    let mut n = 0;
    for piece in text.split_inclusive(' ') {
        let t = tokens::count(tokenizer, piece);
        if n + t > max {
            if end == 0 {
                // Not even the first word fits: its longest prefix that does.
                let (cut, m) = piece
                    .char_indices()
                    .skip(1)
                    .map(|(i, _)| (i, tokens::count(tokenizer, &piece[..i])))
                    .take_while(|(_, m)| *m <= max)
                    .last()
                    .unwrap_or((piece.len(), t));
                return (Arc::from(&piece[..cut]), m.max(1));
            }
            break;
        }
        n += t;
        end += piece.len();
        if n >= max {
            break;
        }
    }
    (Arc::from(text[..end].trim_end()), n.max(1))
}

/// `[simulated] Received 2 attachments: image/png 1234 bytes #0123456789abcdef; ...` — every
/// attachment of the user's message, so fidelity can be checked end to end.
fn acknowledge(message: &aether_contracts::UniversalMessage) -> Option<String> {
    let list = crate::multimodal::attachments(message);
    if list.is_empty() {
        return None;
    }
    let mut s = format!("[simulated] Received {} attachments:", list.len());
    for a in &list {
        let _ = write!(s, " {} {} {} bytes", a.kind, a.mime, a.bytes);
        if let Some(h) = &a.hash {
            let _ = write!(s, " #{h}");
        }
        if let Some(l) = &a.location {
            let _ = write!(s, " at {l}");
        }
        s.push(';');
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    //! The simulator's timing contract and `max_tokens`, on a paused clock (exact durations).

    use std::sync::Arc;
    use std::time::Duration;

    use aether_contracts::{Metadata, ModelConfig, SessionEvent, UniversalMessage};
    use tokio::time::Instant;

    use super::{SimConfig, SimulatedModel};
    use crate::{DeltaSink, HistoryView, ModelError, ModelProvider, ModelRequest, SystemPrompt};

    /// Records when each piece arrived.
    struct Arrivals(Instant, Vec<Duration>);

    #[async_trait::async_trait]
    impl DeltaSink for Arrivals {
        async fn delta(&mut self, _text: &str) -> Result<(), ModelError> {
            self.1.push(self.0.elapsed());
            Ok(())
        }
    }

    fn ask(max_tokens: Option<u32>) -> (ModelConfig, SystemPrompt, Vec<Arc<SessionEvent>>) {
        let mut config = ModelConfig::new("gpt-4o-mini");
        config.max_tokens = max_tokens;
        let event = SessionEvent::new(
            0,
            Arc::from("s"),
            Arc::from("a"),
            UniversalMessage::user("hello"),
            vec![],
        );
        (config, SystemPrompt::new("Be brief."), vec![Arc::new(event)])
    }

    fn request<'a>(c: &'a (ModelConfig, SystemPrompt, Vec<Arc<SessionEvent>>), m: &'a Metadata) -> ModelRequest<'a> {
        ModelRequest {
            model: &c.0,
            system: &c.1,
            history: HistoryView {
                committed: &c.2,
                pending: &[],
            },
            tools: &[],
            metadata: m,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_latency_is_the_same_total_plain_and_streamed_with_the_profiles_first_token_share() {
        let model = SimulatedModel::new(SimConfig {
            fixed_latency: Some(Duration::from_millis(200)),
            ..SimConfig::default()
        });
        let (c, m) = (ask(None), Metadata::new());
        let start = Instant::now();
        let plain = model.generate(request(&c, &m)).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(200));

        let start = Instant::now();
        let mut sink = Arrivals(start, Vec::new());
        let streamed = model.generate_stream(request(&c, &m), &mut sink).await.unwrap();
        let total = start.elapsed();
        assert_eq!(streamed.text, plain.text);
        assert!(sink.1.len() > 20, "many pieces: {}", sink.1.len());
        // Timer granularity (1 ms per sleep) must not add up over the pieces.
        assert!(
            total >= Duration::from_millis(200) && total <= Duration::from_millis(201),
            "streamed total {total:?}"
        );
        // The profile's share: ttft / (ttft + per_token × (tokens − 1)) of the 200 ms.
        let p = model.config.profiles.lookup("gpt-4o-mini").1;
        let n = plain.usage.completion_tokens as f64;
        let share = p.ttft_ms / (p.ttft_ms + p.per_token_ms * (n - 1.0));
        let first = sink.1[0].as_secs_f64() * 1000.0;
        assert!(
            (first - 200.0 * share).abs() <= 1.0,
            "first piece at {first} ms, share {share}"
        );
        assert!(sink.1.windows(2).all(|w| w[0] <= w[1]));
    }

    #[tokio::test(start_paused = true)]
    async fn max_tokens_bounds_the_answer() {
        let model = SimulatedModel::new(SimConfig {
            time_scale: 0.0,
            ..SimConfig::default()
        });
        let m = Metadata::new();
        let full = model.generate(request(&ask(None), &m)).await.unwrap();
        assert!(full.usage.completion_tokens > 10, "{}", full.usage.completion_tokens);
        let cut = model.generate(request(&ask(Some(10)), &m)).await.unwrap();
        assert!(
            cut.usage.completion_tokens <= 10 && cut.usage.completion_tokens >= 5,
            "{:?}",
            cut.usage
        );
        assert!(full.text.starts_with(&*cut.text), "a prefix, cut at a word");
        assert!(cut.text.len() < full.text.len());
        assert!(cut.truncated && !full.truncated);
        assert_eq!((cut.finish_reason(), full.finish_reason()), ("length", "stop"));
        let one = model.generate(request(&ask(Some(1)), &m)).await.unwrap();
        assert_eq!(one.usage.completion_tokens, 1, "{:?}", one.text);
    }
}
