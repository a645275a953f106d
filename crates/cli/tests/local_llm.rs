//! `aether perf run … --provider local --model-path FILE` with a real GGUF model (SmolLM2-135M-Instruct).
//! Needs `--features local-llm` and `scripts/fetch-test-model.sh` (`.ci/run` does both).
#![cfg(feature = "local-llm")]

mod common;

use std::path::PathBuf;

use common::{aether, text, tmp};

fn model_path() -> PathBuf {
    let path = aether_runtime::model::local::fetched_test_model();
    assert!(
        path.is_file(),
        "the test model `{}` is missing: run scripts/fetch-test-model.sh (or set AETHER_TEST_GGUF)",
        path.display()
    );
    path
}

fn summary(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn burst_load_and_endpoint_load_run_on_the_local_model() {
    let dir = tmp("local-llm");
    let model = model_path();
    let model = model.to_str().unwrap();

    let burst = dir.join("burst.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "burst_load",
        "--provider",
        "local",
        "--model-path",
        model,
        "--iterations",
        "8",
        "--concurrency",
        "4",
        "--output",
        burst.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("SIMULATED model"), "a real model answered: {stdout}");
    let v = summary(&burst);
    assert_eq!(v["requests"]["total"], 8);
    assert_eq!(v["requests"]["failed"], 0, "{}", v["errors"]);
    assert_eq!(v["provider"]["simulated"], false);
    assert_eq!(v["provider"]["name"], "local");
    assert!(v["tokens"]["completion"].as_u64().unwrap() >= 8, "{}", v["tokens"]);

    let endpoint = dir.join("endpoint.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "endpoint_load",
        "--provider",
        "local",
        "--model-path",
        model,
        "--iterations",
        "4",
        "--concurrency",
        "2",
        "--prompt-tokens",
        "32",
        "--output-tokens",
        "16",
        "--output",
        endpoint.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = summary(&endpoint);
    assert_eq!(v["requests"]["succeeded"], 4, "{v}");
    assert!(v["ttft_ms"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["output_tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");

    // Bad input: a missing model file is a usage error naming the path.
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "burst_load",
        "--provider",
        "local",
        "--model-path",
        "/nonexistent/x.gguf",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/x.gguf"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}
