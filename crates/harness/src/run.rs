//! Runs one scenario end to end: builds the target, validates the tools, drives the phases,
//! samples resources, and assembles the summary with its KPI verdicts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{AgentConfig, ModelConfig, TaskRequest, UniversalMessage};
use aether_mcp::McpServerConfig;
use aether_runtime::model::{NamedProvider, ProfileSet};
use aether_runtime::StatsSnapshot;
use aether_store::StoreConfig;
use chrono::Utc;
use serde_json::Value;
use tokio::time::Instant;

use crate::build::{build, Built, Sources};
pub use crate::error::HarnessError;
use crate::kpi::{self, KpiInputs, KpiTargets};
use crate::load::{self, Payload, Phase, PhaseOutcome, Recorder};
pub use crate::progress::{NoProgress, Progress};
use crate::resources::{self, Sampler};
use crate::scenario::{ScenarioConfig, ScenarioKind, Stop};
use crate::stats::Unit;
use crate::summary::*;
use crate::target::Target;

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
        }
    }
}

fn agent_config(cfg: &ScenarioConfig, tools: &[String]) -> AgentConfig {
    AgentConfig {
        agent_type: "perf".into(),
        system_prompt: cfg.system_prompt.clone(),
        model_config: ModelConfig::new(cfg.model.as_str()),
        available_tools: tools.to_vec(),
        name: Some(format!("perf-{}", cfg.scenario)),
        description: None,
        framework_config: Default::default(),
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// One phase's outcome: its label, what it measured, and when it began (seconds into the run).
type PhaseResult = (String, PhaseOutcome, f64);

/// Stage two: drives the scenario's phases (two for tool_regression: one tool, then all of them
/// at once; one otherwise) against the target.
async fn run_phases(
    cfg: &Arc<ScenarioConfig>,
    target: &Arc<dyn Target>,
    progress: &Arc<dyn Progress>,
    run_start: Instant,
) -> Result<Vec<PhaseResult>, HarnessError> {
    let payload = match cfg.kind {
        ScenarioKind::MultimodalEcho => Some(Arc::new(build_payload(cfg)?)),
        _ => None,
    };
    let (iterations, duration) = match cfg.stop {
        Stop::Iterations(n) => (Some(n), None),
        Stop::DurationSecs(s) => (None, Some(Duration::from_secs_f64(s))),
    };
    let phase = |tag: &str, tools: &[String], unique: bool, duration: Option<Duration>| Phase {
        config: Arc::clone(cfg),
        agent: agent_config(cfg, tools),
        unique_agent_per_iteration: unique,
        tag: format!("{}-{tag}", cfg.scenario),
        iterations,
        duration,
        warmup: cfg.warmup,
        payload: payload.clone(),
    };

    let mut outcomes: Vec<PhaseResult> = Vec::new();
    let total_hint = iterations;
    if cfg.kind == ScenarioKind::ToolRegression {
        let half = duration.map(|d| d / 2);
        for (label, tools) in [("baseline", &cfg.tools[..1]), ("fanout", &cfg.tools[..])] {
            progress.begin(&format!("{} ({label})", cfg.scenario), total_hint);
            let offset = run_start.elapsed().as_secs_f64();
            let p = Arc::new(phase(label, tools, false, half));
            outcomes.push((
                label.to_owned(),
                load::drive(Arc::clone(target), p, Arc::clone(progress)).await,
                offset,
            ));
            progress.finish();
        }
    } else {
        progress.begin(&cfg.scenario, total_hint);
        let unique = cfg.kind == ScenarioKind::RunnerLifecycle;
        let offset = run_start.elapsed().as_secs_f64();
        let p = Arc::new(phase("main", &cfg.tools, unique, duration));
        outcomes.push((
            "main".into(),
            load::drive(Arc::clone(target), p, Arc::clone(progress)).await,
            offset,
        ));
        progress.finish();
    }

    Ok(outcomes)
}

/// Runs the scenario and returns its summary (it does not write it).
pub async fn run_scenario(opts: RunOptions, progress: Arc<dyn Progress>) -> Result<Summary, HarnessError> {
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
        },
        progress.as_ref(),
    )
    .await?;

    let started_at = Utc::now();
    let run_start = Instant::now();
    let before: Option<StatsSnapshot> = target.runtime_stats();
    let rss_start = resources::rss_bytes();
    let cpu_start = resources::cpu_seconds();
    let sampler = Sampler::start(opts.sample_every);

    let outcomes = run_phases(&cfg, &target, &progress, run_start).await?;

    let forced_expire = if cfg.kind == ScenarioKind::SessionWarmSwitch {
        Some(forced_expire(target.as_ref(), &cfg).await)
    } else {
        None
    };

    if let Err(e) = target.shutdown().await {
        return Err(HarnessError::Runtime(format!("flushing the session store: {e}")));
    }
    if let Some(h) = hub.as_mut() {
        h.shutdown().await;
    }
    let duration_s = run_start.elapsed().as_secs_f64();
    let mut samples = sampler.stop();
    let rss_end = resources::rss_bytes();
    if let Some(rss) = rss_end {
        samples.push(resources::Sample {
            t_s: duration_s,
            rss_bytes: rss,
            cpu_seconds: resources::cpu_seconds(),
        });
    }
    let after = target.runtime_stats();

    // Merge the phases.
    let mut rec = Recorder::default();
    let mut measured = Duration::ZERO;
    let mut issued = 0;
    for (_, o, _) in &outcomes {
        rec.merge(&o.recorder);
        measured += o.measured;
        issued += o.issued;
    }
    let warmup_end_s = outcomes.first().map_or(0.0, |(_, o, off)| off + o.measured_from_s);
    let drift_samples: Vec<_> = samples.iter().copied().filter(|s| s.t_s >= warmup_end_s).collect();
    let drift = resources::drift_bytes_per_hour(&drift_samples);
    let drift_window_s = match (drift_samples.first(), drift_samples.last()) {
        (Some(a), Some(b)) => b.t_s - a.t_s,
        _ => 0.0,
    };

    let total = rec.total();
    let throughput = if measured.is_zero() {
        0.0
    } else {
        total as f64 / measured.as_secs_f64()
    };
    let latency = rec.latency.stats(Unit::Ms);
    let (fanout_ratio, baseline_p50, fanout_p50) = match outcomes.as_slice() {
        [(_, base, _), (_, fan, _)] if !base.recorder.latency.is_empty() && !fan.recorder.latency.is_empty() => {
            let b = base.recorder.latency.quantile_ns(0.5) as f64 / 1e6;
            let f = fan.recorder.latency.quantile_ns(0.5) as f64 / 1e6;
            (Some(f / b), Some(b), Some(f))
        }
        _ => (None, None, None),
    };
    let error_rate = ratio(rec.failed, total);
    let agents_reuse_ratio = ratio(rec.agents_reused, rec.agents_reused + rec.agents_created);

    let multimodal = (rec.attachments > 0).then(|| MultimodalSummary {
        attachments: rec.attachments,
        intact: rec.attachments_intact,
        fidelity: ratio(rec.attachments_intact, rec.attachments),
        conversion_ms: rec.conversion.stats(Unit::Ms),
    });
    let kpis = kpi::evaluate(
        &opts.kpis,
        &KpiInputs {
            scenario: cfg.scenario.clone(),
            kind: cfg.kind,
            succeeded: rec.succeeded,
            latency_p50_s: latency.p50 / 1000.0,
            latency_p95_s: latency.p95 / 1000.0,
            error_rate,
            fanout_ratio,
            throughput_rps: throughput,
            drift_bytes_per_hour: drift,
            drift_window_s,
            agents_reuse_ratio,
            fidelity: multimodal.as_ref().map(|m| m.fidelity),
        },
    );
    let passed = kpis.iter().all(|k| k.pass != Some(false));
    let alert = if latency.count > 0 && latency.p95 / 1000.0 > cfg.max_expected_latency_s {
        Some(format!(
            "latency p95 {:.3} s exceeds the scenario's max_expected_latency {:.1} s",
            latency.p95 / 1000.0,
            cfg.max_expected_latency_s
        ))
    } else if !passed {
        let failed: Vec<&str> = kpis
            .iter()
            .filter(|k| k.pass == Some(false))
            .map(|k| k.name.as_str())
            .collect();
        Some(format!("KPI failed: {}", failed.join(", ")))
    } else {
        None
    };

    let ideal_rps = match (cfg.model_latency_ms, cfg.tools.is_empty(), cfg.rate) {
        (Some(ms), true, None) if ms > 0 && cfg.time_scale > 0.0 => {
            Some(cfg.concurrency as f64 / (ms as f64 * cfg.time_scale / 1000.0))
        }
        _ => None,
    };
    let bound_rps = if latency.mean > 0.0 {
        cfg.concurrency as f64 / (latency.mean / 1000.0)
    } else {
        0.0
    };

    let mut histograms = BTreeMap::new();
    for (name, h) in [
        ("latency", &rec.latency),
        ("overhead", &rec.overhead),
        ("model", &rec.model),
        ("tool", &rec.tool),
        ("agent_create", &rec.create),
        ("agent_cleanup", &rec.cleanup),
    ] {
        if !h.is_empty() {
            histograms.insert(name.to_owned(), h.serialise());
        }
    }
    let runners = match (&before, &after) {
        (Some(b), Some(a)) => Some(RunnersSummary {
            created: a.runners_created - b.runners_created,
            reclaimed: a.reclaimed_runners - b.reclaimed_runners,
        }),
        _ => None,
    };
    let provider = target.provider();
    let rss_delta_per_cycle = match (rss_start, rss_end, cfg.kind) {
        (Some(a), Some(b), ScenarioKind::RunnerLifecycle) if total > 0 => Some((b as f64 - a as f64) / total as f64),
        _ => None,
    };

    Ok(Summary {
        schema_version: SCHEMA_VERSION,
        scenario: cfg.scenario.clone(),
        started_at,
        duration_s,
        simulated: provider.simulated || rec.simulated_turns > 0,
        provider: ProviderSummary {
            name: provider.name.clone(),
            model: cfg.model.clone(),
            simulated: provider.simulated || rec.simulated_turns > 0,
        },
        target: target.info(),
        config: (*cfg).clone(),
        requests: Requests {
            total,
            succeeded: rec.succeeded,
            failed: rec.failed,
            error_rate,
            issued,
            warmup_excluded: issued.saturating_sub(total),
        },
        throughput_rps: throughput,
        latency_ms: latency,
        overhead_us: rec.overhead.stats(Unit::Us),
        model_ms: rec.model.stats(Unit::Ms),
        tool_ms: rec.tool.stats(Unit::Ms),
        tokens: Tokens {
            prompt: rec.prompt_tokens,
            completion: rec.completion_tokens,
            total: rec.prompt_tokens + rec.completion_tokens,
        },
        cost_usd: rec.cost_usd,
        sessions: SessionsSummary {
            created: rec.sessions_created,
            reused: rec.sessions_reused,
            reuse_ratio: ratio(rec.sessions_reused, rec.sessions_created + rec.sessions_reused),
            cold_ms: rec.cold.stats(Unit::Ms),
            warm_ms: rec.warm.stats(Unit::Ms),
            forced_expire,
        },
        agents: AgentsSummary {
            created: rec.agents_created,
            reused: rec.agents_reused,
            reuse_ratio: agents_reuse_ratio,
            cleaned_up: rec.agents_cleaned_up,
            create_ms: rec.create.stats(Unit::Ms),
            cleanup_ms: rec.cleanup.stats(Unit::Ms),
        },
        runners,
        tools: ToolsSummary {
            calls: rec.tool_calls,
            names: cfg.tools.clone(),
            fanout_ratio,
            baseline_p50_ms: baseline_p50,
            fanout_p50_ms: fanout_p50,
            resolution_us: resolution.map(|h| h.stats(Unit::Us)),
            call_costs,
        },
        resources: Resources {
            rss_start_bytes: rss_start,
            rss_end_bytes: rss_end,
            rss_peak_bytes: resources::peak_rss_bytes(),
            cpu_seconds: resources::cpu_seconds() - cpu_start,
            rss_drift_bytes_per_hour: drift,
            drift_window_s,
            rss_delta_per_cycle_bytes: rss_delta_per_cycle,
            samples: samples.len(),
        },
        littles_law: LittlesLaw {
            concurrency: cfg.concurrency,
            mean_latency_ms: latency.mean,
            bound_rps,
            efficiency: if bound_rps > 0.0 { throughput / bound_rps } else { 0.0 },
            ideal_rps,
            efficiency_vs_ideal: ideal_rps.map(|i| throughput / i),
        },
        stream: (rec.streamed_turns > 0).then(|| StreamSummary {
            turns: rec.streamed_turns,
            ttft_ms: rec.ttft.stats(Unit::Ms),
            chunk_gap_ms: rec.chunk_gap.stats(Unit::Ms),
            chunks_per_turn: rec.chunks as f64 / rec.streamed_turns as f64,
            approval_latency_ms: rec.approval.stats(Unit::Ms),
            approval_think_ms: cfg.approval_think_ms,
            drops: rec.drops,
            retries: 0,
        }),
        multimodal: multimodal.clone(),
        kpis,
        passed,
        alert,
        errors: rec.errors.clone(),
        runtime_stats: after,
        histograms,
        measurement: MEASUREMENT_NOTES,
        iterations: total,
        concurrency: cfg.concurrency,
        duration_sec: duration_s,
        latency_avg_sec: latency.mean / 1000.0,
        latency_p50_sec: latency.p50 / 1000.0,
        latency_p95_sec: latency.p95 / 1000.0,
        success_count: rec.succeeded,
        error_count: rec.failed,
    })
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
    let session_id = cfg.session_mode.session_id(&format!("{}-main", cfg.scenario), 0);
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
