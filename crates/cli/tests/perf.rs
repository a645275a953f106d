//! `aether perf` as a user runs it.

mod common;

use common::*;

#[test]
fn run_writes_a_summary_and_says_the_model_was_simulated() {
    let dir = tmp("run");
    let out_file = dir.join("smoke.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "latency_smoke",
        "--time-scale",
        "0",
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("SIMULATED model"), "{stdout}");
    assert!(stdout.contains("KPI verdicts"), "{stdout}");
    // Seconds of start-up give per-hour slopes of noise: the table prints none, and says why.
    assert!(
        stdout.contains("   drift: not judged: ") && !stdout.contains("RSS drift") && !stdout.contains("· drift "),
        "{stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["scenario"], "latency_smoke");
    assert_eq!(v["requests"]["total"], 5);
    assert_eq!(v["provider"]["simulated"], true);
    // Seconds of samples: the drift is not judged, and no fit at a constant live set is made.
    assert!(
        v["resources"].get("heap_drift_at_live_set_bytes_per_hour").is_none(),
        "{}",
        v["resources"]
    );
    for key in [
        "latency_ms",
        "overhead_us",
        "model_ms",
        "tool_ms",
        "tokens",
        "sessions",
        "agents",
        "tools",
        "resources",
        "kpis",
    ] {
        assert!(v.get(key).is_some(), "summary lacks {key}");
    }
    // Each row's gauges split the memory: RSS and its file-backed share, the heap and glibc
    // malloc's share of it (on Linux, where /proc and mallinfo2 are read).
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        let rows = v["timeline"]["rows"].as_array().expect("a time series");
        assert!(!rows.is_empty());
        for r in rows {
            let (rss, file) = (r["rss_bytes"].as_u64().unwrap(), r["rss_file_bytes"].as_u64().unwrap());
            assert!(file > 0 && file < rss, "{r}");
            let (heap, malloc) = (r["heap_bytes"].as_u64().unwrap(), r["malloc_bytes"].as_u64().unwrap());
            assert!(malloc <= heap && heap < rss, "{r}");
            // The harness's own data is part of the heap, and a run in process has a live set.
            let harness = r["harness_bytes"].as_u64().unwrap();
            assert!(harness < heap, "{r}");
            assert!(r["sessions_live"].as_u64().is_some(), "{r}");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn dry_run_prints_the_plan_and_runs_nothing() {
    let dir = tmp("dry");
    let out_file = dir.join("never.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "tool_regression",
        "--dry-run",
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["scenario"]["concurrency"], 3);
    assert_eq!(v["agent_config"]["available_tools"].as_array().unwrap().len(), 5);
    assert!(!out_file.exists(), "a dry run writes nothing");

    // endpoint_load plans like any catalog scenario, with its endpoint's shape.
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "endpoint_load",
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--request-rate",
        "50",
        "--burstiness",
        "0.5",
        "--dry-run",
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scenario"]["scenario"], "endpoint_load");
    assert_eq!(v["scenario"]["kind"], "endpoint_load");
    assert_eq!(v["scenario"]["rate"], 50.0);
    assert_eq!(v["endpoint"]["burstiness"], 0.5);
    assert_eq!(v["base_url"], "http://127.0.0.1:9/v1");
    assert!(!out_file.exists(), "a dry run writes nothing");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_exits_2() {
    let out = aether(&["perf", "run", "--scenario", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("latency_smoke"),
        "lists the scenarios: {}",
        text(&out.stderr)
    );

    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "tool_regression",
        "--tools",
        "crm_lookup,nope_tool",
        "--time-scale",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown tool `nope_tool`"),
        "{}",
        text(&out.stderr)
    );

    for args in [
        &["perf", "run", "--scenario", "burst_load", "--iterations", "0"][..],
        &["perf", "run", "--scenario", "burst_load", "--duration", "5x"],
        &["perf", "run", "--scenario", "burst_load", "--concurrency", "0"],
        &[
            "perf",
            "run",
            "--scenario",
            "burst_load",
            "--iterations",
            "3",
            "--duration",
            "1s",
        ],
        &["perf", "run"],
        &[
            "perf",
            "run",
            "--scenario",
            "burst_load",
            "--kpi-file",
            "/nonexistent.toml",
        ],
        &["perf", "run", "--scenario", "endpoint_load"],
        &[
            "perf",
            "run",
            "--scenario",
            "endpoint_load",
            "--provider",
            "openai",
            "--base-url",
            "ftp://x",
        ],
        &["sim-llm", "--faults", "429,bogus"],
        &["sim-llm", "--fault-rate", "2"],
    ] {
        let out = aether(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn gate_fails_the_run_when_a_kpi_fails() {
    let dir = tmp("gate");
    let f = dir.join("g.json");
    let args = [
        "perf",
        "run",
        "--scenario",
        "latency_smoke",
        "--time-scale",
        "0",
        "--error-rate",
        "1",
        "--output",
        f.to_str().unwrap(),
    ];
    let out = aether(&args);
    assert!(
        out.status.success(),
        "without --gate a failing KPI is reported, not fatal"
    );
    let mut gated = args.to_vec();
    gated.push("--gate");
    let out = aether(&gated);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("gate failed for: latency_smoke (KPI failed: "), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn all_runs_every_scenario_and_list_shows_them() {
    let dir = tmp("all");
    let out = aether(&[
        "perf",
        "run",
        "--all",
        "--time-scale",
        "0",
        "--output",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(
        files.len(),
        8,
        "every scenario but endpoint_load, which needs --provider"
    );
    assert!(text(&out.stderr).contains("endpoint_load: skipped (it drives a model endpoint"));
    let list = text(&aether(&["perf", "list"]).stdout);
    for name in [
        "latency_smoke",
        "burst_load",
        "tool_regression",
        "session_warm_switch",
        "multi_user_handoff",
        "runner_lifecycle",
        "stream_probe",
        "multimodal_echo",
        "endpoint_load",
    ] {
        assert!(list.contains(name), "{name} in {list}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn compare_prints_markdown_and_fails_on_regression() {
    let dir = tmp("cmp");
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    std::fs::write(
        &a,
        r#"{"schema_version":1,"scenario":"burst_load","latency_ms":{"p50":100.0},"throughput_rps":10.0}"#,
    )
    .unwrap();
    std::fs::write(
        &b,
        r#"{"schema_version":1,"scenario":"burst_load","latency_ms":{"p50":150.0},"throughput_rps":10.0}"#,
    )
    .unwrap();
    let out = aether(&["perf", "compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("| latency p50 (ms) | 100.000 | 150.000 | +50.0 % | worse |"));
    let out = aether(&[
        "perf",
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--fail-on-regression",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let out = aether(&["perf", "compare", a.to_str().unwrap(), "/nonexistent.json"]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn every_perf_subcommand_takes_output_and_quiet() {
    let dir = tmp("quiet");
    // run: the summary is written, nothing is printed.
    let summary = dir.join("s.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "latency_smoke",
        "--time-scale",
        "0",
        "-q",
        "-o",
        summary.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "quiet prints nothing");
    assert_eq!(text(&out.stderr), "", "not even a progress bar");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(v["scenario"], "latency_smoke");

    // list: the catalog as JSON.
    let catalog = dir.join("catalog.json");
    let out = aether(&["perf", "list", "-q", "-o", catalog.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&catalog).unwrap()).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"burst_load") && names.contains(&"endpoint_load"),
        "{names:?}"
    );

    // compare: the Markdown in a file, the verdict in the exit code.
    let md = dir.join("cmp/delta.md");
    let s = summary.to_str().unwrap();
    let out = aether(&["perf", "compare", s, s, "-q", "--output", md.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(std::fs::read_to_string(&md).unwrap().contains("| latency p50 (ms) |"));

    // report, merge, history: the file written, nothing printed.
    let html = dir.join("r/report.html");
    let merged = dir.join("m/merged.json");
    let history = dir.join("h/history.html");
    for args in [
        vec!["perf", "report", s, "-q", "-o", html.to_str().unwrap()],
        vec!["perf", "merge", s, s, "-q", "-o", merged.to_str().unwrap()],
        vec!["perf", "history", s, "-q", "-o", history.to_str().unwrap()],
    ] {
        let out = aether(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }
    assert!(std::fs::read_to_string(&html).unwrap().starts_with("<!doctype html>"));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    assert_eq!(
        m["requests"]["total"], 10,
        "the same summary twice adds up to twice its requests"
    );
    assert!(std::fs::read_to_string(&history).unwrap().contains("latency_smoke"));
    std::fs::remove_dir_all(dir).ok();
}
