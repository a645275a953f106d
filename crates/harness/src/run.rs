//! Runs one scenario end to end, in stages: builds the target (and checks the tools against it),
//! drives the phases while sampling resources, derives the figures with their KPI verdicts, and
//! assembles the summary. endpoint_load, which drives a model endpoint, is one call to
//! [`crate::endpoint`].

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{AgentConfig, ModelConfig, TaskRequest, UniversalMessage};
use aether_mcp::McpServerConfig;
use aether_runtime::model::{NamedProvider, ProfileSet};
use aether_runtime::StatsSnapshot;
use aether_store::StoreConfig;
use serde_json::Value;
use tokio::time::Instant;

use crate::assemble::{self, Context};
pub use crate::build::FrameworkHook;
use crate::build::{build, check_options, Built, Choices, Sources};
use crate::call::PhaseParts;
use crate::endpoint::{self, EndpointShape};
pub use crate::error::HarnessError;
use crate::figures::{self, PhaseRun, Window};
use crate::kpi::KpiTargets;
use crate::load::{self, Payload, Phase};
pub use crate::progress::{NoProgress, Progress, Recent};
use crate::report::Report;
use crate::resources::{self, Sampler};
use crate::scenario::{ScenarioConfig, ScenarioKind, Stop};
use crate::summary::{ForcedExpire, Provenance, RunnersSummary};
use crate::target::Target;
use crate::timeline::{self, Clock, Series};

/// A resolved scenario plus how to judge and sample it.
pub struct RunOptions {
    pub config: ScenarioConfig,
    pub kpis: KpiTargets,
    pub profiles: ProfileSet,
    pub sample_every: Duration,
    /// The session store the runtime uses (memory by default).
    pub store: StoreConfig,
    /// A real model provider to use instead of the simulated one: (name, provider).
    pub provider: Option<NamedProvider>,
    /// Drive this target (e.g. [`HttpTarget`](crate::http_target::HttpTarget)) instead of a
    /// runtime built in this process; `store`, `provider` and `mcp` are then the server's business.
    pub target: Option<Arc<dyn Target>>,
    /// MCP servers whose tools join the in-process runtime's registry (`server.tool`).
    pub mcp: Vec<McpServerConfig>,
    /// tool_regression: calls per measured series of the per-call cost table.
    pub tool_call_samples: u32,
    /// tool_regression: calls of each new-session-per-call MCP series (each opens a session).
    pub per_call_session_samples: u32,
    /// endpoint_load: the prompts, arrival shape and SLOs.
    pub endpoint: EndpointShape,
    /// The time series' interval (1 s by default), aligned on UTC.
    pub interval: Duration,
    /// Written into the summary: the build, the machine, the command.
    pub provenance: Provenance,
    /// Where the in-process runtime's GenAI metrics go (e.g. an OTLP export), if anywhere.
    pub meter: Option<Arc<dyn aether_runtime::meter::GenAiMeter>>,
    /// Registers more agent frameworks on the in-process runtime (the CLI adds `adk` here).
    pub frameworks: Option<FrameworkHook>,
}

impl RunOptions {
    pub fn new(config: ScenarioConfig) -> Self {
        Self {
            config,
            kpis: KpiTargets::default(),
            profiles: ProfileSet::builtin(),
            sample_every: Duration::from_millis(500),
            store: StoreConfig::Memory,
            provider: None,
            target: None,
            mcp: Vec::new(),
            tool_call_samples: 200,
            per_call_session_samples: 20,
            endpoint: EndpointShape::default(),
            interval: Duration::from_secs(1),
            provenance: Provenance::current(),
            meter: None,
            frameworks: None,
        }
    }
}

/// The agent a scenario creates: `perf-<scenario>` with the scenario's model, prompt and tools.
pub fn agent_config(cfg: &ScenarioConfig, tools: &[String]) -> AgentConfig {
    let mut framework_config = serde_json::Map::new();
    if let Some(f) = &cfg.framework {
        framework_config.insert("framework".into(), f.as_str().into());
    }
    AgentConfig {
        agent_type: "perf".into(),
        system_prompt: cfg.system_prompt.clone(),
        model_config: ModelConfig::new(cfg.model.as_str()),
        available_tools: tools.to_vec(),
        name: Some(format!("perf-{}", cfg.scenario)),
        description: None,
        framework_config,
    }
}

/// Stage two: drives the scenario's phases (two for tool_regression: one tool, then all of them
/// at once; one otherwise) against the target.
async fn run_phases(
    cfg: &Arc<ScenarioConfig>,
    target: &Arc<dyn Target>,
    progress: &Arc<dyn Progress>,
    run_start: Instant,
    series: &Arc<Series>,
) -> Result<Vec<PhaseRun>, HarnessError> {
    let payload = match cfg.kind {
        ScenarioKind::MultimodalEcho => Some(Arc::new(build_payload(cfg)?)),
        _ => None,
    };
    let (iterations, duration) = match cfg.stop {
        Stop::Iterations(n) => (Some(n), None),
        Stop::DurationSecs(s) => (None, Some(Duration::from_secs_f64(s))),
    };
    let messages = vec![match &payload {
        Some(p) => p.message.clone(),
        None => UniversalMessage::user(cfg.prompt.as_str()),
    }];
    let mut metadata = cfg.metadata.clone();
    metadata.insert("scenario".into(), Value::from(cfg.scenario.as_str()));
    let phase = |tag: &str, tools: &[String], unique: bool, duration: Option<Duration>| {
        Ok::<_, HarnessError>(Phase {
            config: Arc::clone(cfg),
            parts: PhaseParts::new(agent_config(cfg, tools), messages.clone(), metadata.clone())
                .map_err(HarnessError::Runtime)?,
            unique_agent_per_iteration: unique,
            tag: cfg.tag(tag),
            iterations,
            duration,
            warmup: cfg.warmup,
            payload: payload.clone(),
        })
    };

    let mut outcomes: Vec<PhaseRun> = Vec::new();
    let total_hint = iterations;
    if cfg.kind == ScenarioKind::ToolRegression {
        let half = duration.map(|d| d / 2);
        for (label, tools) in [("baseline", &cfg.tools[..1]), ("fanout", &cfg.tools[..])] {
            progress.begin(&format!("{} ({label})", cfg.scenario), total_hint);
            let offset = run_start.elapsed().as_secs_f64();
            let p = Arc::new(phase(label, tools, false, half)?);
            outcomes.push(PhaseRun {
                outcome: load::drive(Arc::clone(target), p, Arc::clone(progress), Arc::clone(series)).await,
                started_s: offset,
            });
            progress.finish();
        }
    } else {
        progress.begin(&cfg.scenario, total_hint);
        let unique = cfg.kind == ScenarioKind::RunnerLifecycle;
        let offset = run_start.elapsed().as_secs_f64();
        let p = Arc::new(phase("main", &cfg.tools, unique, duration)?);
        outcomes.push(PhaseRun {
            outcome: load::drive(Arc::clone(target), p, Arc::clone(progress), Arc::clone(series)).await,
            started_s: offset,
        });
        progress.finish();
    }

    Ok(outcomes)
}

/// Runs the scenario and returns its report (it does not write it).
///
/// A runtime scenario goes through four stages: build the target (`crate::build`), run the
/// phases (`run_phases`), derive the figures (`crate::figures`), assemble the summary
/// (`crate::assemble`). endpoint_load drives the model endpoint of `opts.provider` instead.
pub async fn run_scenario(opts: RunOptions, progress: Arc<dyn Progress>) -> Result<Report, HarnessError> {
    check_options(&Choices {
        kind: opts.config.kind,
        remote_target: opts.target.is_some(),
        mcp: &opts.mcp,
        model_endpoint: opts.provider.is_some(),
    })?;
    if opts.config.kind.drives_endpoint() {
        let mut run = endpoint::options(&opts.config, &opts.endpoint, opts.provider)?;
        run.interval = opts.interval;
        let mut summary = endpoint::run(run, progress).await;
        summary.provenance = opts.provenance;
        summary.config = Some(opts.config);
        return Ok(summary.into());
    }
    let cfg = Arc::new(opts.config);
    let Built {
        target,
        mut hub,
        call_costs,
        resolution,
    } = build(
        &cfg,
        Sources {
            target: opts.target,
            store: &opts.store,
            profiles: opts.profiles,
            provider: opts.provider,
            mcp: opts.mcp,
            tool_call_samples: opts.tool_call_samples,
            per_call_session_samples: opts.per_call_session_samples,
            meter: opts.meter,
            frameworks: opts.frameworks,
        },
        progress.as_ref(),
    )
    .await?;

    let clock = Clock::start(opts.interval);
    let run_start = Instant::now();
    let started_at = clock.utc(run_start);
    let series = Arc::new(Series::new(clock));
    let gauges = {
        let target = Arc::clone(&target);
        timeline::Sampler::start(
            Arc::clone(&series),
            move || {
                let target = Arc::clone(&target);
                async move {
                    timeline::TargetReading {
                        server: target.server_sample().await,
                        sessions_live: target.runtime_stats().map(|s| s.active_sessions),
                    }
                }
            },
            Arc::clone(&progress),
        )
    };
    let before: Option<StatsSnapshot> = target.runtime_stats();
    let calls_before = aether_runtime::model::resilience::snapshot();
    let rss_start = resources::rss_bytes();
    let cpu_start = resources::cpu_seconds();
    let sampler = Sampler::start(opts.sample_every);

    let phases = run_phases(&cfg, &target, &progress, run_start, &series).await;
    gauges.finish().await;
    let phases = phases?;
    let forced_expire = match cfg.kind {
        ScenarioKind::SessionWarmSwitch => Some(forced_expire(target.as_ref(), &cfg).await),
        _ => None,
    };

    if let Err(e) = target.shutdown().await {
        return Err(HarnessError::Runtime(format!("flushing the session store: {e}")));
    }
    if let Some(h) = hub.as_mut() {
        h.shutdown().await;
    }
    let duration_s = run_start.elapsed().as_secs_f64();
    let (samples, end) = sampler.finish(duration_s);
    let rss_end = end.map(|s| s.rss_bytes);
    let mut window = Window {
        started_at,
        duration_s,
        samples,
        rss_start,
        rss_end,
        cpu_seconds: resources::cpu_seconds() - cpu_start,
        runners: None,
        runtime_stats: target.runtime_stats(),
        rss_peak: resources::peak_rss_bytes(),
        timeline: series.timeline(),
    };
    window.runners = match (&before, &window.runtime_stats) {
        (Some(b), Some(a)) => Some(RunnersSummary {
            created: a.runners_created - b.runners_created,
            reclaimed: a.reclaimed_runners - b.reclaimed_runners,
        }),
        _ => None,
    };
    let figures = figures::derive(&cfg, &opts.kpis, figures::Measured::of_phases(&phases), &window);
    let context = Context {
        slowest: figures.rec.slowest.sorted(|id| target.trace_id(id)),
        provider: target.provider(),
        target: target.info(),
        call_costs,
        resolution,
        forced_expire,
        provenance: opts.provenance,
        resilience: Some(aether_runtime::model::resilience::snapshot().since(&calls_before)).filter(|r| r.calls > 0),
    };
    Ok(assemble::summary(&cfg, figures, window, context).into())
}

/// FNV-1a over the bytes: the harness's own implementation of the documented short hash, so
/// the check does not trust the runtime's.
fn fnv1a_hex(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Synthetic image payloads with real signatures (the runtime sniffs types; it does not decode
/// pixels): one of each format, from 1 KiB to 256 KiB.
fn sample_images() -> Vec<Vec<u8>> {
    let formats: [(&[u8], usize); 5] = [
        (&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A], 1024),
        (&[0xFF, 0xD8, 0xFF, 0xE0], 64 * 1024),
        (b"GIF89a", 8 * 1024),
        (b"RIFF\x00\x00\x04\x00WEBPVP8 ", 256 * 1024),
        (b"BM", 32 * 1024),
    ];
    formats
        .iter()
        .map(|(magic, len)| {
            let mut v = magic.to_vec();
            v.extend((0..len - magic.len()).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
            v
        })
        .collect()
}

/// The multimodal_echo message: text, the images (built-in or `--multimodal-payload`) as data
/// URLs, and a file reference; plus the acknowledgement each attachment must get.
fn build_payload(cfg: &ScenarioConfig) -> Result<Payload, HarnessError> {
    use aether_contracts::{ContentPart, FileReference, ImageReference, MessageContent, Metadata};
    use aether_runtime::multimodal::ImageFormat;
    use base64::Engine as _;
    let images = match &cfg.multimodal_payload {
        Some(path) => vec![std::fs::read(path).map_err(|e| {
            HarnessError::InvalidInput(format!("--multimodal-payload: cannot read `{}`: {e}", path.display()))
        })?],
        None => sample_images(),
    };
    let mut parts = vec![ContentPart::Text(cfg.prompt.clone())];
    let mut expected = Vec::new();
    for bytes in images {
        let format = ImageFormat::sniff(&bytes).ok_or_else(|| {
            HarnessError::InvalidInput(
                "--multimodal-payload: the file is not a jpeg, png, gif, webp or bmp image".into(),
            )
        })?;
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        parts.push(ContentPart::ImageReference(ImageReference {
            image_path: format!("data:{};base64,{data}", format.mime()),
            image_format: String::new(),
            width: None,
            height: None,
            metadata: Metadata::new(),
        }));
        expected.push(format!(
            "image {} {} bytes #{}",
            format.mime(),
            bytes.len(),
            fnv1a_hex(&bytes)
        ));
    }
    if cfg.multimodal_payload.is_none() {
        parts.push(ContentPart::FileReference(FileReference {
            file_path: "/data/statement.pdf".into(),
            file_type: "application/pdf".into(),
            file_size: Some(2048),
            encoding: "binary".into(),
            metadata: Metadata::new(),
        }));
        expected.push("file application/pdf 2048 bytes at /data/statement.pdf".into());
    }
    let mut message = UniversalMessage::user("");
    message.content = MessageContent::Parts(parts);
    Ok(Payload { message, expected })
}

/// session_warm_switch's last step: archive the session, then send one more turn on it.
async fn forced_expire(target: &dyn Target, cfg: &ScenarioConfig) -> ForcedExpire {
    let session_id = cfg.session_mode.session_id(&cfg.tag("main"), 0);
    let created = target
        .process(TaskRequest::create_agent("expire-agent", agent_config(cfg, &cfg.tools)))
        .await;
    let agent_id = created.agent_id.unwrap_or_default();
    let t = Instant::now();
    let _ = target.cleanup_session(&session_id).await;
    let cleanup_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let r = target
        .process(TaskRequest::converse(
            "expire-turn",
            agent_id,
            session_id,
            vec![UniversalMessage::user(cfg.prompt.as_str())],
        ))
        .await;
    let next_turn_ms = t.elapsed().as_secs_f64() * 1000.0;
    let recovered = r
        .metadata
        .get("session")
        .and_then(|s| s.get("recovered"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    ForcedExpire {
        cleanup_ms,
        next_turn_ms,
        recovered,
    }
}
