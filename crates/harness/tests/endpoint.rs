//! endpoint_load against `aether sim-llm` on loopback.

use std::sync::Arc;
use std::time::Duration;

use aether_harness::endpoint::{self, Arrival, EndpointOptions, Slo};
use aether_harness::run::NoProgress;
use aether_runtime::model::openai::{OpenAiConfig, OpenAiProvider};
use aether_runtime::model::SimConfig;
use aether_simllm::{SimLlm, SimLlmConfig};

async fn server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = SimLlmConfig {
        sim: SimConfig {
            fixed_latency: Some(Duration::from_millis(20)),
            ..SimConfig::default()
        },
        ..SimLlmConfig::default()
    };
    tokio::spawn(SimLlm::new(cfg).serve(listener));
    format!("http://{addr}/v1")
}

fn options(url: &str, arrival: Arrival) -> EndpointOptions {
    EndpointOptions {
        provider: Arc::new(
            OpenAiProvider::new(OpenAiConfig {
                max_retries: 0,
                ..OpenAiConfig::new(url)
            })
            .unwrap(),
        ),
        model: "gpt-4o-mini".into(),
        requests: Some(40),
        duration: None,
        arrival,
        prompts: endpoint::synthetic_prompts(64, Some(32)),
        slo: Slo {
            ttft_ms: Some(10_000.0),
            tpot_ms: None,
            e2e_ms: Some(10_000.0),
        },
        seed: 7,
        warmup: 0,
        interval: std::time::Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_closed_loop_report_every_figure() {
    let url = server().await;
    let s = endpoint::run(
        options(
            &url,
            Arrival::Rate {
                rate: 200.0,
                burstiness: 1.0,
            },
        ),
        Arc::new(NoProgress),
    )
    .await;
    assert_eq!((s.requests.total, s.requests.succeeded), (40, 40), "{:?}", s.errors);
    assert!(s.simulated, "sim-llm's answers are marked simulated");
    for (name, st) in [
        ("ttft", &s.ttft_ms),
        ("tpot", &s.tpot_ms),
        ("itl", &s.itl_ms),
        ("e2e", &s.e2e_ms),
        ("lag", &s.schedule_lag_ms),
    ] {
        assert!(st.count > 0, "{name} recorded");
    }
    assert!(s.e2e_ms.p50 >= s.ttft_ms.p50);
    assert!(s.output_tokens > 40, "usage counted");
    assert!(s.goodput_rps.is_some());
    assert_eq!(s.requests.met_slo, 40);
    assert!(s.scheduled_rate_rps.is_some() && s.offered_rate_rps == Some(200.0));
    assert!(!s.gpu.note.is_empty());
    // The time series: every request in some interval, with its E2E, TTFT and ITL.
    let rows = &s.timeline.rows;
    assert_eq!(rows.iter().map(|r| r.succeeded).sum::<u64>(), 40, "{rows:?}");
    let with = |pick: fn(&aether_harness::timeline::IntervalRow) -> Option<&String>| {
        rows.iter()
            .filter_map(|r| aether_harness::timeline::Timeline::hist(pick(r).map(String::as_str)))
            .map(|h| h.len())
            .sum::<u64>()
    };
    assert_eq!(with(|r| r.latency.as_ref()), 40);
    assert_eq!(with(|r| r.ttft.as_ref()), 40);
    assert_eq!(with(|r| r.itl.as_ref()), s.itl_ms.count);
    assert!(
        rows.last().unwrap().gauges.rss_bytes.is_some(),
        "the last interval is sampled too"
    );

    let s = endpoint::run(options(&url, Arrival::Closed { concurrency: 4 }), Arc::new(NoProgress)).await;
    assert_eq!(s.requests.succeeded, 40);
    assert_eq!(s.offered_rate_rps, None);
}

#[test]
fn a_bad_dataset_names_the_line() {
    let dir = std::env::temp_dir().join(format!("aether-ds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("d.jsonl");
    std::fs::write(&p, "{\"prompt\": \"hi\", \"output_tokens\": 8}\n{\"prompt\": 5}\n").unwrap();
    let e = endpoint::read_dataset(&p).unwrap_err();
    assert!(e.contains("line 2") && e.contains("prompt"), "{e}");
    std::fs::write(
        &p,
        "{\"prompt\": \"hi\"}\n\n{\"prompt\": \"there\", \"output_tokens\": 4}\n",
    )
    .unwrap();
    assert_eq!(endpoint::read_dataset(&p).unwrap().len(), 2);
    std::fs::remove_dir_all(dir).ok();
}

/// endpoint_load is a catalog scenario: `run_scenario` runs it from its resolved config and
/// returns its report, named and judged like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_load_runs_from_the_catalog_like_any_scenario() {
    use aether_harness::endpoint::EndpointShape;
    use aether_harness::scenario::{self, Overrides};
    use aether_harness::{run_scenario, HarnessError, Report, RunOptions, ScenarioConfig};

    let url = server().await;
    let spec = scenario::find("endpoint_load").expect("in the catalog");
    let cfg = ScenarioConfig::resolve(
        spec,
        &Overrides {
            iterations: Some(12),
            concurrency: Some(3),
            ..Overrides::default()
        },
    )
    .unwrap();
    let provider = options(&url, Arrival::Closed { concurrency: 1 }).provider;
    let opts = RunOptions {
        provider: Some(("openai".into(), provider)),
        endpoint: EndpointShape {
            prompt_tokens: 32,
            output_tokens: Some(8),
            ..EndpointShape::default()
        },
        ..RunOptions::new(cfg.clone())
    };
    let report = run_scenario(opts, Arc::new(NoProgress)).await.unwrap();
    let Report::Endpoint(s) = &report else {
        panic!("endpoint_load reports endpoint figures")
    };
    assert_eq!((s.requests.total, s.requests.succeeded), (12, 12), "{:?}", s.errors);
    assert_eq!(s.arrival, Arrival::Closed { concurrency: 3 });
    assert_eq!(report.scenario(), "endpoint_load");
    assert!(report.simulated(), "sim-llm answered");
    assert!(report.verdict().is_ok());
    assert!(report.render().contains("SIMULATED"));
    let dir = std::env::temp_dir().join(format!("aether-ep-report-{}", std::process::id()));
    let path = report.default_path(&dir);
    assert!(path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("endpoint_load-"));
    report.write(&path).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["requests"]["succeeded"], 12);
    std::fs::remove_dir_all(&dir).ok();

    // Without a model endpoint it is refused before anything runs.
    let e = run_scenario(RunOptions::new(cfg), Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, HarnessError::InvalidInput(m) if m.contains("drives a model endpoint")),
        "{e:?}"
    );
}
