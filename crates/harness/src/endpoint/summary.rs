//! The endpoint_load summary (schema version 1) and its readable table.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::gpu::GpuReport;
use super::options::{Arrival, Slo};
use crate::stats::{SerialisedHist, Stats};

/// The endpoint_load summary (schema version 2: its histograms are compact, HDR V2 + DEFLATE).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointSummary {
    pub schema_version: u32,
    pub scenario: &'static str,
    pub started_at: DateTime<Utc>,
    /// The build, the machine and the command.
    pub provenance: crate::summary::Provenance,
    /// The resolved scenario (requests or duration, rate or concurrency, seed, ...), when the
    /// run came from the catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::scenario::ScenarioConfig>,
    pub provider: String,
    pub model: String,
    /// The endpoint said its answers were simulated (`aether sim-llm`).
    pub simulated: bool,
    pub arrival: Arrival,
    pub slo: Slo,
    pub requests: EndpointRequests,
    pub duration_s: f64,
    pub offered_rate_rps: Option<f64>,
    /// The rate of the arrival schedule actually drawn (random gaps vary around the offered rate).
    pub scheduled_rate_rps: Option<f64>,
    /// Sends per second actually achieved, over first to last send.
    pub achieved_rate_rps: f64,
    pub request_throughput_rps: f64,
    /// Same as request_throughput_rps, for `perf compare`.
    pub throughput_rps: f64,
    pub output_tokens: u64,
    pub output_tokens_per_s: f64,
    pub goodput_rps: Option<f64>,
    /// Requests sent before the run and left out of every figure.
    pub warmup_requests: u64,
    pub ttft_ms: Stats,
    pub tpot_ms: Stats,
    pub itl_ms: Stats,
    pub e2e_ms: Stats,
    /// E2E again under the common name, for `perf compare`.
    pub latency_ms: Stats,
    pub schedule_lag_ms: Stats,
    pub gpu: GpuReport,
    pub errors: Vec<String>,
    pub histograms: std::collections::BTreeMap<String, SerialisedHist>,
    /// Per interval: requests, errors, in-flight, E2E latency, TTFT and ITL, RSS and CPU.
    pub timeline: crate::timeline::Timeline,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_profile: Option<crate::summary::CpuProfileLinks>,
    pub definitions: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointRequests {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub error_rate: f64,
    pub met_slo: u64,
}

pub(super) const DEFINITIONS: &str = "from the actual send: TTFT to the first streamed text; TPOT = (E2E - TTFT) / (output tokens - 1); \
ITL = gaps between streamed pieces; E2E to the end of the stream; schedule lag = actual send - scheduled arrival; \
throughput and output tokens/s over first scheduled arrival to last completion; goodput = requests meeting every SLO per second.";

impl EndpointSummary {
    /// A readable table.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let src = if self.simulated {
            " — SIMULATED (aether sim-llm answered; no real model was called)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "\n== endpoint_load — provider {} model `{}`{src}",
            self.provider, self.model
        );
        let _ = writeln!(
            s,
            "   {} requests ({} ok, {} failed) in {:.2} s · offered {} req/s (schedule {}) · sent {:.1} req/s · completed {:.1} req/s",
            self.requests.total,
            self.requests.succeeded,
            self.requests.failed,
            self.duration_s,
            self.offered_rate_rps.map_or("closed-loop".to_owned(), |r| format!("{r:.1}")),
            self.scheduled_rate_rps.map_or("-".to_owned(), |r| format!("{r:.1}")),
            self.achieved_rate_rps,
            self.request_throughput_rps
        );
        let _ = writeln!(
            s,
            "   output {} tokens · {:.1} tokens/s{}",
            self.output_tokens,
            self.output_tokens_per_s,
            if self.warmup_requests > 0 {
                format!(" · {} warm-up requests left out", self.warmup_requests)
            } else {
                String::new()
            }
        );
        if let Some(g) = self.goodput_rps {
            let _ = writeln!(s, "   goodput {g:.1} req/s ({} met every SLO)", self.requests.met_slo);
        }
        let _ = writeln!(
            s,
            "\n   {:<18} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "ms", "mean", "p50", "p90", "p99", "max"
        );
        for (name, st) in [
            ("TTFT", &self.ttft_ms),
            ("TPOT", &self.tpot_ms),
            ("ITL", &self.itl_ms),
            ("E2E", &self.e2e_ms),
            ("schedule lag", &self.schedule_lag_ms),
        ] {
            let _ = writeln!(
                s,
                "   {:<18} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                name, st.mean, st.p50, st.p90, st.p99, st.max
            );
        }
        let _ = writeln!(s, "   GPU: {}", self.gpu.note);
        for e in &self.errors {
            let _ = writeln!(s, "   error: {e}");
        }
        s
    }
}
