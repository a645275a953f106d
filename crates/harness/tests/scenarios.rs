//! Every scenario end to end at time scale 0, with the summary checked against what happened.

use std::sync::Arc;

use aether_harness::kpi::KpiTargets;
use aether_harness::run::NoProgress;
use aether_harness::scenario::{self, Overrides, ScenarioConfig};
use aether_harness::{run_scenario, RunOptions, Summary};

fn instant() -> Overrides {
    Overrides {
        time_scale: Some(0.0),
        ..Overrides::default()
    }
}

async fn run(name: &str, o: Overrides) -> Summary {
    let cfg = ScenarioConfig::resolve(scenario::find(name).unwrap(), &o).unwrap();
    let report = run_scenario(RunOptions::new(cfg), Arc::new(NoProgress)).await.unwrap();
    report.runtime().expect("a runtime scenario's summary").clone()
}

fn kpi<'s>(s: &'s Summary, name: &str) -> &'s aether_harness::kpi::Kpi {
    s.kpis
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no KPI {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_smoke_counts_what_it_did() {
    let s = run("latency_smoke", instant()).await;
    assert_eq!((s.requests.total, s.requests.succeeded, s.requests.failed), (5, 5, 0));
    assert!(s.simulated && s.provider.simulated);
    assert_eq!(s.provider.name, "simulated");
    assert_eq!(
        (s.sessions.created, s.sessions.reused),
        (5, 0),
        "per_request: a new session each time"
    );
    assert_eq!(
        (s.agents.created, s.agents.reused),
        (1, 4),
        "equal configs share one agent"
    );
    assert_eq!(s.latency_ms.count, 5);
    assert!(s.tokens.total > 0 && s.cost_usd > 0.0);
    assert_eq!(s.runtime_stats.as_ref().unwrap().turns, 5);
    assert!(s.histograms.contains_key("latency"));
    assert_eq!(kpi(&s, "error_rate").pass, Some(true));
    assert_eq!(kpi(&s, "rss_drift").pass, None, "a run of a second cannot judge drift");
    assert!(s.passed);
    // The allocators' counters beside RSS (glibc's mallinfo2 in a test process).
    let heap = s.resources.heap_end_bytes.expect("allocated bytes at the end");
    assert!(heap > 0 && heap < s.resources.rss_peak_bytes.unwrap(), "{heap}");
    // The original harness's fields are there too.
    assert_eq!((s.success_count, s.error_count, s.iterations), (5, 0, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_load_uses_its_concurrency_and_judges_throughput() {
    let s = run("burst_load", instant()).await;
    assert_eq!(s.requests.total, 25);
    assert_eq!(s.config.concurrency, 5);
    assert_eq!(s.sessions.created, 25);
    assert!(s.throughput_rps > 0.0);
    assert!(kpi(&s, "throughput").pass.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_regression_reports_the_fanout_ratio() {
    let s = run("tool_regression", instant()).await;
    assert_eq!(s.requests.total, 20, "a baseline phase and a fan-out phase of 10 each");
    assert_eq!(s.tools.names.len(), 5);
    assert_eq!(s.tools.calls, 10 + 10 * 5);
    assert!(s.tools.fanout_ratio.is_some());
    assert!(s.tools.resolution_us.unwrap().count > 0);
    assert!(kpi(&s, "tool_fanout_ratio").pass.is_some());
}

#[tokio::test(start_paused = true)]
async fn tool_fanout_ratio_is_near_one_when_tools_run_in_parallel() {
    // Virtual time: tools of 100 ms, model of 0 ms. Sequential tools would give 5x.
    let o = Overrides {
        time_scale: Some(1.0),
        model_latency_ms: Some(0),
        tool_latency_ms: Some(100),
        ..Overrides::default()
    };
    let s = run("tool_regression", o).await;
    let r = s.tools.fanout_ratio.unwrap();
    assert!((0.95..1.05).contains(&r), "fan-out ratio {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_warm_switch_separates_cold_from_warm_and_expires() {
    let s = run("session_warm_switch", instant()).await;
    assert_eq!(s.requests.total, 6);
    assert_eq!((s.sessions.created, s.sessions.reused), (1, 5));
    assert_eq!((s.sessions.cold_ms.count, s.sessions.warm_ms.count), (1, 5));
    let f = s.sessions.forced_expire.clone().unwrap();
    assert!(f.recovered, "the turn after the forced expiry recovers the history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_user_handoff_reports_controlled_reuse() {
    let s = run("multi_user_handoff", instant()).await;
    assert_eq!(s.requests.total, 40);
    assert_eq!(s.sessions.created, 40, "each user has their own session");
    assert_eq!(s.config.metadata.get("tenant").unwrap(), "enterprise_pool");
    assert_eq!(s.agents.created + s.agents.reused, 40);
    assert!(s.agents.reuse_ratio >= 0.8, "{}", s.agents.reuse_ratio);
    assert_eq!(kpi(&s, "session_reuse").pass, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_lifecycle_creates_and_cleans_up_an_agent_per_iteration() {
    let s = run("runner_lifecycle", instant()).await;
    assert_eq!(s.requests.total, 12);
    assert_eq!((s.agents.created, s.agents.reused, s.agents.cleaned_up), (12, 0, 12));
    assert_eq!(s.agents.cleanup_ms.count, 12);
    let r = s.runners.clone().unwrap();
    assert_eq!((r.created, r.reclaimed), (12, 12));
    assert!(s.resources.rss_delta_per_cycle_bytes.is_some());
    let stats = s.runtime_stats.unwrap();
    assert_eq!((stats.active_agents, stats.active_runners), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_is_excluded_and_duration_and_rate_modes_run() {
    let s = run(
        "burst_load",
        Overrides {
            iterations: Some(10),
            warmup: Some(3),
            ..instant()
        },
    )
    .await;
    assert_eq!(
        (s.requests.total, s.requests.issued, s.requests.warmup_excluded),
        (7, 10, 3)
    );
    assert_eq!(s.latency_ms.count, 7);

    let s = run(
        "burst_load",
        Overrides {
            duration_s: Some(0.3),
            ..instant()
        },
    )
    .await;
    assert!(s.requests.total > 0);
    assert_eq!(s.requests.failed, 0);

    let s = run(
        "burst_load",
        Overrides {
            iterations: Some(20),
            rate: Some(200.0),
            ..instant()
        },
    )
    .await;
    assert_eq!(s.requests.total, 20);
    assert!(
        s.duration_s >= 0.09,
        "20 arrivals at 200/s span about 0.1 s, took {}",
        s.duration_s
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_reported_and_fail_the_gate() {
    let s = run(
        "latency_smoke",
        Overrides {
            error_rate: Some(1.0),
            ..instant()
        },
    )
    .await;
    assert_eq!((s.requests.succeeded, s.requests.failed), (0, 5));
    assert_eq!(s.requests.error_rate, 1.0);
    assert_eq!(s.errors.len(), 5);
    assert!(s.errors[0].starts_with("model.upstream"), "{}", s.errors[0]);
    assert_eq!(kpi(&s, "error_rate").pass, Some(false));
    assert_eq!(kpi(&s, "latency_p50").pass, None);
    assert!(!s.passed);
    assert!(s.alert.unwrap().contains("error_rate"));
}

#[tokio::test]
async fn bad_options_and_unknown_tools_are_refused() {
    let spec = scenario::find("burst_load").unwrap();
    let e = ScenarioConfig::resolve(
        spec,
        &Overrides {
            iterations: Some(0),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.flag, "--iterations");
    let e = ScenarioConfig::resolve(
        spec,
        &Overrides {
            iterations: Some(5),
            warmup: Some(5),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.flag, "--warmup");
    let e = ScenarioConfig::resolve(
        spec,
        &Overrides {
            error_rate: Some(2.0),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.flag, "--error-rate");

    let o = Overrides {
        tools: Some(vec!["crm_lokup".into()]),
        ..instant()
    };
    let cfg = ScenarioConfig::resolve(scenario::find("tool_regression").unwrap(), &o).unwrap();
    let err = run_scenario(RunOptions::new(cfg), Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did you mean `demo.crm_lookup`"), "{err}");
}

#[test]
fn kpi_targets_load_from_toml_and_reject_unknown_keys() {
    let dir = std::env::temp_dir().join(format!("aether-kpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("kpi.toml");
    std::fs::write(&good, "[kpis]\nlatency_p50_s = 1.0\n").unwrap();
    let t = KpiTargets::from_file(&good).unwrap();
    assert_eq!(t.latency_p50_s, 1.0);
    assert_eq!(t.latency_p95_s, 4.0, "unset keys keep the plan's value");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[kpis]\nlatency_p51_s = 1.0\n").unwrap();
    let e = KpiTargets::from_file(&bad).unwrap_err();
    assert!(e.contains("latency_p51_s"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn compare_marks_direction_and_regressions() {
    use aether_harness::compare;
    let base = serde_json::json!({"schema_version": 1, "scenario": "burst_load", "simulated": true,
        "latency_ms": {"p50": 100.0, "p95": 200.0}, "throughput_rps": 50.0, "requests": {"error_rate": 0.0}});
    let new = serde_json::json!({"schema_version": 1, "scenario": "burst_load", "simulated": true,
        "latency_ms": {"p50": 120.0, "p95": 150.0}, "throughput_rps": 60.0, "requests": {"error_rate": 0.0}});
    let d = compare::deltas(&base, &new);
    let p50 = d.iter().find(|d| d.label == "latency p50 (ms)").unwrap();
    assert_eq!(p50.regression_pct, Some(20.0));
    let tput = d.iter().find(|d| d.label == "throughput (req/s)").unwrap();
    assert_eq!(tput.regression_pct, Some(-20.0), "higher throughput is better");
    let r = compare::regressions(&base, &new, 10.0);
    assert_eq!(r.len(), 1);
    let md = compare::markdown(&base, &new, "a.json", "b.json", Some(10.0));
    assert!(
        md.contains("| latency p50 (ms) | 100.000 | 120.000 | +20.0 % | ❌ regression |"),
        "{md}"
    );
    assert!(
        md.contains("| latency p95 (ms) | 200.000 | 150.000 | -25.0 % | better |"),
        "{md}"
    );
    assert!(md.contains("simulated model"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_probe_measures_chunks_and_answers_approvals() {
    let s = run(
        "stream_probe",
        Overrides {
            approval_think_ms: Some(0),
            ..instant()
        },
    )
    .await;
    assert_eq!((s.requests.total, s.requests.failed), (10, 0), "{:?}", s.errors);
    let st = s.stream.clone().expect("stream figures");
    assert_eq!(st.turns, 10);
    assert_eq!(st.ttft_ms.count, 10);
    assert!(st.chunks_per_turn > 10.0, "{}", st.chunks_per_turn);
    assert_eq!(
        st.approval_latency_ms.count, 10,
        "aml_checker needed approval in every turn"
    );
    assert_eq!((st.drops, st.retries), (0, 0));
    assert_eq!(s.tools.calls, 20, "both tools ran: the approval was granted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_scenario_can_stream() {
    let s = run(
        "burst_load",
        Overrides {
            mode: Some(aether_harness::scenario::Mode::Streaming),
            ..instant()
        },
    )
    .await;
    assert_eq!(s.requests.succeeded, 25);
    assert!(s.stream.unwrap().chunks_per_turn > 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multimodal_echo_checks_every_attachment() {
    let s = run("multimodal_echo", instant()).await;
    assert_eq!(s.requests.succeeded, 10, "{:?}", s.errors);
    let m = s.multimodal.clone().expect("multimodal figures");
    assert_eq!(m.attachments, 60, "5 images and a file, 10 times");
    assert_eq!(m.intact, 60);
    assert_eq!(m.fidelity, 1.0);
    assert_eq!(m.conversion_ms.count, 10);
    assert_eq!(kpi(&s, "multimodal_fidelity").pass, Some(true));

    let missing = Overrides {
        multimodal_payload: Some("/nonexistent/picture.png".into()),
        ..instant()
    };
    let cfg = ScenarioConfig::resolve(scenario::find("multimodal_echo").unwrap(), &missing).unwrap();
    let err = run_scenario(RunOptions::new(cfg), Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/picture.png"), "{err}");
}

/// The time series and the breakdowns add up to the run's totals: every request in exactly one
/// interval, errors by code, each tool's time, live turns' TTFT and gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_series_and_breakdowns_add_up_to_the_totals() {
    use aether_harness::timeline::Timeline;
    let s = run(
        "tool_regression",
        Overrides {
            iterations: Some(40),
            error_rate: Some(0.25),
            seed: Some(3),
            ..instant()
        },
    )
    .await;
    let t = &s.timeline;
    assert_eq!(t.interval_s, 1.0);
    let sum = |f: fn(&aether_harness::timeline::IntervalRow) -> u64| t.rows.iter().map(f).sum::<u64>();
    assert_eq!(sum(|r| r.requests), s.requests.total);
    assert_eq!(sum(|r| r.failed), s.requests.failed);
    assert!(s.requests.failed > 0, "the injected errors happened");
    let hist_total: u64 = t
        .rows
        .iter()
        .filter_map(|r| Timeline::hist(r.latency.as_deref()))
        .map(|h| h.len())
        .sum();
    assert_eq!(
        hist_total, s.requests.total,
        "every request's latency is in one interval"
    );
    // Intervals are aligned on UTC seconds, one after another.
    for w in t.rows.windows(2) {
        assert_eq!(w[1].t - w[0].t, 1.0);
        assert_eq!(w[0].t.fract(), 0.0);
    }
    assert!(t
        .rows
        .iter()
        .all(|r| r.gauges.rss_bytes.is_some() && r.gauges.in_flight.is_some()));
    let codes: u64 = s.breakdowns.errors_by_code.values().sum();
    assert_eq!(codes, s.requests.failed);
    assert_eq!(
        s.breakdowns
            .latency_by_error_code_ms
            .values()
            .map(|st| st.count)
            .sum::<u64>(),
        s.requests.failed
    );
    let tools = &s.breakdowns.latency_by_tool_ms;
    // Each tool by its resolved name (`demo.crm_lookup` for `crm_lookup`).
    assert!(
        !tools.is_empty()
            && tools
                .keys()
                .all(|k| s.tools.names.iter().any(|n| k.ends_with(n.as_str()))),
        "{tools:?}"
    );
    assert_eq!(
        s.breakdowns.latency_by_phase_ms["agent_create"].count,
        s.requests.issued
    );
    assert!(s.histograms.keys().any(|k| k.starts_with("tool.")));
    assert!(s.histograms.contains_key("latency_baseline") && s.histograms.contains_key("latency_fanout"));

    let live = run("stream_probe", instant()).await;
    let ttft: u64 = live
        .timeline
        .rows
        .iter()
        .filter_map(|r| Timeline::hist(r.ttft.as_deref()))
        .map(|h| h.len())
        .sum();
    assert_eq!(ttft, live.stream.as_ref().unwrap().turns);
    assert!(live.timeline.rows.iter().any(|r| r.itl.is_some()));
}
