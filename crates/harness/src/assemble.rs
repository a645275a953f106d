//! Stage four of a run: the [`Summary`] assembled from the scenario, its derived figures, the
//! run's window and what building the target measured. Nothing is computed here that a reader
//! of the summary could not trace to [`crate::figures`].

use aether_runtime::model::ProviderInfo;

use crate::figures::{Figures, Window};
use crate::scenario::ScenarioConfig;
use crate::stats::{DurationHist, Unit};
use crate::summary::*;
use crate::target::TargetInfo;
use crate::tool_calls::ToolCallCost;

/// What the run learnt outside its phases.
pub(crate) struct Context {
    pub provider: ProviderInfo,
    pub target: TargetInfo,
    /// tool_regression: what one call costs, in process and over MCP.
    pub call_costs: Option<Vec<ToolCallCost>>,
    /// How long resolving the scenario's tools takes.
    pub resolution: Option<DurationHist>,
    /// session_warm_switch: the turn after a forced expiry.
    pub forced_expire: Option<ForcedExpire>,
    pub provenance: Provenance,
    /// The slowest requests, slowest first.
    pub slowest: Vec<crate::slowest::SlowRequest>,
    /// The HTTP model providers' retries and breaker over the run (in process, when they made
    /// calls).
    pub resilience: Option<aether_runtime::model::resilience::ResilienceSummary>,
}

/// The summary of a run of `cfg`.
pub(crate) fn summary(cfg: &ScenarioConfig, f: Figures, w: Window, ctx: Context) -> Summary {
    let rec = &f.rec;
    let simulated = ctx.provider.simulated || rec.simulated_turns > 0;
    let latency = f.latency;
    Summary {
        schema_version: SCHEMA_VERSION,
        scenario: cfg.scenario.clone(),
        started_at: w.started_at,
        duration_s: w.duration_s,
        simulated,
        provenance: ctx.provenance,
        provider: ProviderSummary {
            name: ctx.provider.name.clone(),
            model: cfg.model.clone(),
            simulated,
            resilience: ctx.resilience,
        },
        target: ctx.target,
        config: cfg.clone(),
        requests: Requests {
            total: f.total,
            succeeded: rec.succeeded,
            failed: rec.failed,
            error_rate: f.error_rate,
            issued: f.issued,
            warmup_excluded: f.issued.saturating_sub(f.total),
        },
        throughput_rps: f.throughput_rps,
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
            reuse_ratio: f.sessions_reuse_ratio,
            cold_ms: rec.cold.stats(Unit::Ms),
            warm_ms: rec.warm.stats(Unit::Ms),
            forced_expire: ctx.forced_expire,
        },
        agents: AgentsSummary {
            created: rec.agents_created,
            reused: rec.agents_reused,
            reuse_ratio: f.agents_reuse_ratio,
            cleaned_up: rec.agents_cleaned_up,
            create_ms: rec.create.stats(Unit::Ms),
            cleanup_ms: rec.cleanup.stats(Unit::Ms),
        },
        runners: w.runners,
        tools: ToolsSummary {
            calls: rec.tool_calls,
            names: cfg.tools.clone(),
            fanout_ratio: f.fanout.as_ref().map(|x| x.ratio),
            baseline_p50_ms: f.fanout.as_ref().map(|x| x.baseline_p50_ms),
            fanout_p50_ms: f.fanout.as_ref().map(|x| x.fanout_p50_ms),
            resolution_us: ctx.resolution.map(|h| h.stats(Unit::Us)),
            call_costs: ctx.call_costs,
        },
        resources: Resources {
            rss_start_bytes: w.rss_start,
            rss_end_bytes: w.rss_end,
            rss_peak_bytes: w.rss_peak,
            cpu_seconds: w.cpu_seconds,
            rss_drift_bytes_per_hour: f.drift_bytes_per_hour,
            rss_drift_error_bytes_per_hour: f.rss_drift_error,
            rss_drift_late_bytes_per_hour: f.rss_drift_late.map(|h| h.slope),
            rss_drift_late_error_bytes_per_hour: f.rss_drift_late.map(|h| h.stderr),
            heap_start_bytes: w.samples.iter().find_map(|s| s.heap_bytes),
            heap_end_bytes: w.samples.iter().rev().find_map(|s| s.heap_bytes),
            heap_drift_bytes_per_hour: f.heap_drift.map(|h| h.slope),
            heap_drift_error_bytes_per_hour: f.heap_drift.map(|h| h.stderr),
            heap_drift_late_bytes_per_hour: f.heap_drift_late.map(|h| h.slope),
            heap_drift_late_error_bytes_per_hour: f.heap_drift_late.map(|h| h.stderr),
            series_end_bytes: w.samples.iter().rev().find_map(|s| s.series_bytes),
            histograms_end_bytes: w.samples.iter().rev().find_map(|s| s.histogram_bytes),
            heap_drift_net_bytes_per_hour: f.heap_drift_net.map(|h| h.slope),
            heap_drift_net_error_bytes_per_hour: f.heap_drift_net.map(|h| h.stderr),
            heap_drift_late_net_bytes_per_hour: f.heap_drift_late_net.map(|h| h.slope),
            heap_drift_late_net_error_bytes_per_hour: f.heap_drift_late_net.map(|h| h.stderr),
            sqlite_cache_end_bytes: w.samples.iter().rev().find_map(|s| s.sqlite_cache_bytes),
            heap_drift_net_less_cache_bytes_per_hour: f.heap_drift_net_less_cache.map(|h| h.slope),
            heap_drift_net_less_cache_error_bytes_per_hour: f.heap_drift_net_less_cache.map(|h| h.stderr),
            heap_drift_late_net_less_cache_bytes_per_hour: f.heap_drift_late_net_less_cache.map(|h| h.slope),
            heap_drift_late_net_less_cache_error_bytes_per_hour: f.heap_drift_late_net_less_cache.map(|h| h.stderr),
            heap_drift_at_live_set_bytes_per_hour: f.heap_drift_at_live_set.map(|j| j.per_hour.slope),
            heap_drift_at_live_set_error_bytes_per_hour: f.heap_drift_at_live_set.map(|j| j.per_hour.stderr),
            heap_bytes_per_live_session: f.heap_drift_at_live_set.map(|j| j.per_unit.slope),
            heap_bytes_per_live_session_error: f.heap_drift_at_live_set.map(|j| j.per_unit.stderr),
            drift_window_s: f.drift_window_s,
            rss_delta_per_cycle_bytes: f.rss_delta_per_cycle,
            samples: w.samples.len(),
        },
        littles_law: LittlesLaw {
            concurrency: cfg.concurrency,
            mean_latency_ms: latency.mean,
            bound_rps: f.bound_rps,
            efficiency: if f.bound_rps > 0.0 {
                f.throughput_rps / f.bound_rps
            } else {
                0.0
            },
            ideal_rps: f.ideal_rps,
            efficiency_vs_ideal: f.ideal_rps.map(|i| f.throughput_rps / i),
        },
        stream: (rec.streamed_turns > 0).then(|| StreamSummary {
            turns: rec.streamed_turns,
            ttft_ms: rec.ttft.stats(Unit::Ms),
            chunk_gap_ms: rec.chunk_gap.stats(Unit::Ms),
            chunks: rec.chunks,
            chunks_per_turn: rec.chunks as f64 / rec.streamed_turns as f64,
            approval_latency_ms: rec.approval.stats(Unit::Ms),
            approval_think_ms: cfg.approval_think_ms,
            drops: rec.drops,
            retries: 0,
        }),
        multimodal: f.multimodal,
        kpis: f.kpis,
        passed: f.passed,
        alert: f.alert,
        errors: rec.errors.clone(),
        runtime_stats: w.runtime_stats,
        histograms: f.histograms,
        breakdowns: f.breakdowns,
        measured: f.measured,
        timeline: w.timeline,
        merged_from: Vec::new(),
        cpu_profile: None,
        span_export: aether_runtime::telemetry::SPAN_EXPORT.read(),
        slowest: ctx.slowest,
        measurement: MEASUREMENT_NOTES,
        iterations: f.total,
        concurrency: cfg.concurrency,
        duration_sec: w.duration_s,
        latency_avg_sec: latency.mean / 1000.0,
        latency_p50_sec: latency.p50 / 1000.0,
        latency_p95_sec: latency.p95 / 1000.0,
        success_count: rec.succeeded,
        error_count: rec.failed,
    }
}
