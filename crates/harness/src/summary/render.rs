//! The readable table of a run's summary (`Summary::render`): what the model was (and that a
//! simulated one was simulated), the figures, and the KPI verdicts.

use std::fmt::Write as _;

use super::Summary;

impl Summary {
    /// A readable table with the KPI verdicts.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let src = if self.simulated {
            if self.provider.name == "simulated" {
                format!(
                    "SIMULATED model `{}` (provider: simulated; no real model was called)",
                    self.provider.model
                )
            } else {
                format!(
                    "SIMULATED model `{}` behind provider {} (aether sim-llm answered; no real model was called)",
                    self.provider.model, self.provider.name
                )
            }
        } else {
            format!("model `{}` via {}", self.provider.model, self.provider.name)
        };
        let _ = writeln!(s, "\n== {} — {}", self.scenario, self.config.description);
        let _ = writeln!(s, "   {src}");
        if let Some(f) = &self.config.framework {
            match self.provenance.frameworks.get(&format!("{f}-rust")) {
                Some(v) => {
                    let _ = writeln!(s, "   framework `{f}` ({f}-rust {v})");
                }
                None => {
                    let _ = writeln!(s, "   framework `{f}`");
                }
            }
        }
        let _ = writeln!(
            s,
            "   {} requests ({} ok, {} failed, {:.2} % errors) in {:.2} s · concurrency {} · {:.1} req/s",
            self.requests.total,
            self.requests.succeeded,
            self.requests.failed,
            self.requests.error_rate * 100.0,
            self.duration_s,
            self.config.concurrency,
            self.throughput_rps
        );
        let _ = writeln!(
            s,
            "\n   {:<22} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "metric", "p50", "p90", "p95", "p99", "max"
        );
        for (name, st) in [
            ("latency ms", &self.latency_ms),
            ("model ms", &self.model_ms),
            ("tools ms", &self.tool_ms),
            ("framework overhead µs", &self.overhead_us),
            ("agent create ms", &self.agents.create_ms),
        ] {
            if st.count > 0 && st.max >= 0.001 {
                let _ = writeln!(
                    s,
                    "   {:<22} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                    name, st.p50, st.p90, st.p95, st.p99, st.max
                );
            }
        }
        if self.agents.cleanup_ms.count > 0 {
            let c = &self.agents.cleanup_ms;
            let _ = writeln!(
                s,
                "   {:<22} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                "agent cleanup ms", c.p50, c.p90, c.p95, c.p99, c.max
            );
        }
        if let Some(slow) = self.slowest.first() {
            let _ = writeln!(
                s,
                "   slowest request: {:.3} ms, task {}{}",
                slow.latency_ms,
                slow.task_id,
                slow.trace_id
                    .as_deref()
                    .map(|t| format!(", trace {t}"))
                    .unwrap_or_default()
            );
        }
        if let Some(e) = &self.span_export {
            let _ = writeln!(
                s,
                "   OTLP spans: {} exported, {} dropped (queue full {}, failed exports {}) · queue peak {} of {}",
                e.exported,
                e.dropped(),
                e.dropped_queue_full,
                e.dropped_export_failed,
                e.queue_high_water,
                e.queue_capacity
            );
        }
        let _ = writeln!(
            s,
            "\n   tokens {} (prompt {}, completion {}) · cost ${:.6}",
            self.tokens.total, self.tokens.prompt, self.tokens.completion, self.cost_usd
        );
        let _ = writeln!(
            s,
            "   sessions: {} created, {} reused ({:.0} %) · agents: {} created, {} reused ({:.0} %), {} cleaned up",
            self.sessions.created,
            self.sessions.reused,
            self.sessions.reuse_ratio * 100.0,
            self.agents.created,
            self.agents.reused,
            self.agents.reuse_ratio * 100.0,
            self.agents.cleaned_up
        );
        if self.sessions.cold_ms.count > 0 && self.sessions.warm_ms.count > 0 {
            let _ = writeln!(
                s,
                "   cold turn p50 {:.3} ms · warm turn p50 {:.3} ms",
                self.sessions.cold_ms.p50, self.sessions.warm_ms.p50
            );
        }
        if let Some(f) = &self.sessions.forced_expire {
            let _ = writeln!(
                s,
                "   forced expiry: cleanup {:.3} ms, next turn {:.3} ms (history recovered: {})",
                f.cleanup_ms, f.next_turn_ms, f.recovered
            );
        }
        if let Some(r) = &self.runners {
            let _ = writeln!(s, "   runners: {} created, {} reclaimed", r.created, r.reclaimed);
        }
        if let Some(ratio) = self.tools.fanout_ratio {
            let _ = writeln!(
                s,
                "   tool fan-out: p50 {:.3} ms with {} tools vs {:.3} ms with one → ratio {:.3}",
                self.tools.fanout_p50_ms.unwrap_or(0.0),
                self.tools.names.len(),
                self.tools.baseline_p50_ms.unwrap_or(0.0),
                ratio
            );
        }
        if let Some(r) = &self.tools.resolution_us {
            let _ = writeln!(s, "   tool resolution: p50 {:.3} µs, p99 {:.3} µs", r.p50, r.p99);
        }
        if let Some(rows) = &self.tools.call_costs {
            let _ = writeln!(
                s,
                "\n   one tool call, one at a time (µs)  {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "call p50", "call p99", "own p50", "ovh p50", "ovh p99", "errors"
            );
            // The path turns use for the tool: the first of its rows, which the others compare to.
            let mut used = "";
            for r in rows {
                if r.vs_pooled.is_none() {
                    used = r.session.unwrap_or("");
                }
                let path = match r.session {
                    Some(session) => format!("{} {session}", r.transport),
                    None => r.transport.to_owned(),
                };
                let own = r.own_us.as_ref().map_or("n/a".to_owned(), |o| format!("{:.1}", o.p50));
                let vs = r
                    .vs_pooled
                    .map(|v| format!("  ×{:.1} p50, ×{:.1} p99 vs {used}", v.p50, v.p99))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "   {:<34} {:>9.1} {:>9.1} {:>9} {:>9.1} {:>9.1} {:>9}{vs}",
                    format!("{} ({path})", r.tool),
                    r.call_us.p50,
                    r.call_us.p99,
                    own,
                    r.overhead_us.p50,
                    r.overhead_us.p99,
                    r.errors
                );
            }
            for r in rows {
                if let Some(e) = &r.first_error {
                    let _ = writeln!(
                        s,
                        "   first error of {} ({}): {e}",
                        r.tool,
                        r.session.unwrap_or(r.transport)
                    );
                }
            }
            if rows.iter().any(|r| r.session.is_some() && r.own_us.is_none()) {
                let _ = writeln!(
                    s,
                    "   (own n/a: the server does not report its tool time, so the overhead includes it)"
                );
            }
        }
        let mb = |b: Option<u64>| b.map_or("n/a".to_owned(), |b| format!("{:.1} MB", b as f64 / 1e6));
        let _ = writeln!(
            s,
            "   memory: start {}, end {}, peak {} · cpu {:.2} s",
            mb(self.resources.rss_start_bytes),
            mb(self.resources.rss_end_bytes),
            mb(self.resources.rss_peak_bytes),
            self.resources.cpu_seconds
        );
        // A window too short for the drift KPI (seconds of start-up) gives per-hour slopes of
        // noise: they stay in the summary's `resources`, and the table says why it shows none.
        let unjudged = self
            .kpis
            .iter()
            .find(|k| k.name == "rss_drift" && k.value.is_none())
            .and_then(|k| k.note.as_deref());
        if let Some(why) = unjudged {
            let _ = writeln!(s, "   drift: {why}");
        }
        if self.resources.heap_end_bytes.is_some() {
            let r = &self.resources;
            // " <label>X ± E MB/h<tail>" when both the slope and its error are known (and the
            // window is long enough to judge).
            let slope = |label: &str, d: Option<f64>, e: Option<f64>, tail: &str| match (d, e, unjudged) {
                (Some(d), Some(e), None) => format!("{label}{:.2} ± {:.2} MB/h{tail}", d / 1e6, e / 1e6),
                _ => String::new(),
            };
            let late = |d, e| slope(" (second half: ", d, e, ")");
            let rss_late = late(r.rss_drift_late_bytes_per_hour, r.rss_drift_late_error_bytes_per_hour);
            if !rss_late.is_empty() {
                let _ = writeln!(
                    s,
                    "   RSS drift{}{rss_late}",
                    slope(" ", r.rss_drift_bytes_per_hour, r.rss_drift_error_bytes_per_hour, ""),
                );
            }
            let _ = writeln!(
                s,
                "   heap allocated: start {}, end {}{}{}",
                mb(r.heap_start_bytes),
                mb(r.heap_end_bytes),
                slope(
                    " · drift ",
                    r.heap_drift_bytes_per_hour,
                    r.heap_drift_error_bytes_per_hour,
                    ""
                ),
                late(r.heap_drift_late_bytes_per_hour, r.heap_drift_late_error_bytes_per_hour),
            );
            // "drift X ± E MB/h (second half: …)", or empty where the whole window has no fit.
            let drift = |d, e, late_d, late_e| match slope("drift ", d, e, "") {
                whole if whole.is_empty() => whole,
                whole => whole + &late(late_d, late_e),
            };
            let net = drift(
                r.heap_drift_net_bytes_per_hour,
                r.heap_drift_net_error_bytes_per_hour,
                r.heap_drift_late_net_bytes_per_hour,
                r.heap_drift_late_net_error_bytes_per_hour,
            );
            if let (Some(held), false) = (r.series_end_bytes, net.is_empty()) {
                let _ = writeln!(
                    s,
                    "   heap less the harness's time series and histograms ({:.2} + {:.2} MB at the end): {net}",
                    held as f64 / 1e6,
                    r.histograms_end_bytes.unwrap_or(0) as f64 / 1e6,
                );
            }
            let less_cache = drift(
                r.heap_drift_net_less_cache_bytes_per_hour,
                r.heap_drift_net_less_cache_error_bytes_per_hour,
                r.heap_drift_late_net_less_cache_bytes_per_hour,
                r.heap_drift_late_net_less_cache_error_bytes_per_hour,
            );
            if let (Some(cache), false) = (r.sqlite_cache_end_bytes, less_cache.is_empty()) {
                let _ = writeln!(
                    s,
                    "   of it, SQLite's page caches ({:.2} MB at the end; they fill to cache_size a connection, then hold); less them too: {less_cache}",
                    cache as f64 / 1e6,
                );
            }
            if let (Some(per_session), Some(per_session_err)) =
                (r.heap_bytes_per_live_session, r.heap_bytes_per_live_session_error)
            {
                let _ = writeln!(
                    s,
                    "   at a constant live set (heap less the harness's data{}, fitted on time and live sessions together): {} ({per_session:.0} ± {per_session_err:.0} B a live session)",
                    if r.sqlite_cache_end_bytes.is_some() { " and the page caches" } else { "" },
                    slope("drift ", r.heap_drift_at_live_set_bytes_per_hour, r.heap_drift_at_live_set_error_bytes_per_hour, ""),
                );
            }
        }
        if let Some(d) = self.resources.rss_delta_per_cycle_bytes {
            let _ = writeln!(s, "   rss delta per cycle: {:.0} bytes", d);
        }
        let ll = &self.littles_law;
        let _ = write!(
            s,
            "   Little's law: bound {:.1} req/s (concurrency / mean latency), efficiency {:.1} %",
            ll.bound_rps,
            ll.efficiency * 100.0
        );
        if let (Some(i), Some(e)) = (ll.ideal_rps, ll.efficiency_vs_ideal) {
            let _ = write!(
                s,
                "; ideal {:.1} req/s at the fixed model latency, reached {:.1} %",
                i,
                e * 100.0
            );
        }
        let _ = writeln!(s);
        if let Some(r) = &self.provider.resilience {
            let _ = writeln!(
                s,
                "   model endpoint: {} calls · {} retries ({:.1} ms waited; {} retried calls took {:.1} ms on average) · circuit breaker opened {}, closed {}, refused {} calls",
                r.calls, r.retries, r.retry_wait_ms, r.retried_calls, r.retried_call_mean_ms, r.breaker_opened, r.breaker_closed, r.refused_while_open
            );
        }
        if let Some(st) = &self.stream {
            let _ = writeln!(
                s,
                "   stream: first chunk p50 {:.3} ms · chunk gap p50 {:.3} / p95 {:.3} ms · {:.1} chunks per turn · drops {} · retries {}",
                st.ttft_ms.p50, st.chunk_gap_ms.p50, st.chunk_gap_ms.p95, st.chunks_per_turn, st.drops, st.retries
            );
            if st.approval_latency_ms.count > 0 {
                let _ = writeln!(
                    s,
                    "   approvals: {} answered, latency p50 {:.3} ms (think time {} ms)",
                    st.approval_latency_ms.count, st.approval_latency_ms.p50, st.approval_think_ms
                );
            }
        }
        if let Some(m) = &self.multimodal {
            let _ = writeln!(
                s,
                "   multimodal: {} of {} attachments acknowledged intact (fidelity {:.1} %) · conversion p50 {:.3} ms",
                m.intact,
                m.attachments,
                m.fidelity * 100.0,
                m.conversion_ms.p50
            );
        }
        let _ = writeln!(s, "\n   KPI verdicts:");
        for k in &self.kpis {
            let verdict = match k.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "n/a ",
            };
            let value = k.value.map_or("-".to_owned(), |v| format!("{v:.4}"));
            let note = k.note.as_deref().map(|n| format!("  ({n})")).unwrap_or_default();
            let _ = writeln!(
                s,
                "   [{verdict}] {:<18} {:>12} {:<6} target {}{note}",
                k.name, value, k.unit, k.target
            );
        }
        if let Some(a) = &self.alert {
            let _ = writeln!(s, "\n   ALERT: {a}");
        }
        for e in &self.errors {
            let _ = writeln!(s, "   error: {e}");
        }
        s
    }
}
