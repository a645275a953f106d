//! `--framework` on `perf run`, `chat` and `serve`, and `aether perf versus`: the adk framework
//! from the command line, recorded in summaries, stored like any chat, compared side by side.

mod common;

use common::*;

#[test]
fn perf_run_on_adk_records_the_framework_and_its_version() {
    let dir = tmp("fw-perf");
    let summary = dir.join("adk.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "tool_regression",
        "--framework",
        "adk",
        "--iterations",
        "40",
        "--concurrency",
        "4",
        "--time-scale",
        "0",
        "--tool-call-samples",
        "5",
        "--per-call-session-samples",
        "2",
        "--output",
        summary.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("framework `adk` (adk-rust 2.3.0)"),
        "{}",
        text(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(v["config"]["framework"], "adk");
    assert_eq!(v["provenance"]["frameworks"]["adk-rust"], "2.3.0");
    assert_eq!(v["requests"]["failed"], 0, "{}", v["errors"]);
    assert!(
        v["tools"]["calls"].as_u64().unwrap() > 0,
        "adk ran the tools: {}",
        v["tools"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_framework_is_a_usage_error_everywhere_and_creates_nothing() {
    let dir = tmp("fw-bad");
    let db = dir.join("never.db");
    for args in [
        vec!["perf", "run", "--scenario", "latency_smoke", "--framework", "langgraph"],
        vec![
            "chat",
            "--framework",
            "langgraph",
            "--store-path",
            db.to_str().unwrap(),
            "-p",
            "hi",
        ],
        vec![
            "serve",
            "--framework",
            "langgraph",
            "--bind",
            "127.0.0.1:0",
            "--store",
            "memory",
        ],
        vec![
            "perf",
            "versus",
            "--scenario",
            "latency_smoke",
            "--frameworks",
            "native,langgraph",
        ],
        vec![
            "perf",
            "versus",
            "--scenario",
            "latency_smoke",
            "--frameworks",
            "native",
        ],
    ] {
        let out = aether(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("--framework"), "{args:?}: {err}");
    }
    assert!(!db.exists(), "a refused chat creates no store");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_adk_chat_is_stored_like_any_other_with_adks_invocation_ids() {
    let dir = tmp("fw-chat");
    let db = dir.join("s.db");
    let db = db.to_str().unwrap();
    let out = aether(&[
        "chat",
        "--framework",
        "adk",
        "--time-scale",
        "0",
        "--tools",
        "crm_lookup,fx_quote",
        "--store-path",
        db,
        "--session-id",
        "adk-chat",
        "-p",
        "go",
        "-p",
        "and now?",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 of 2 tool calls succeeded"),
        "{}",
        text(&out.stdout)
    );
    let show = aether(&["sessions", "show", "adk-chat", "--store-path", db, "--json"]);
    assert!(show.status.success(), "{}", text(&show.stderr));
    let shown = text(&show.stdout);
    assert!(shown.contains("adk_invocation_id"), "{shown}");
    assert!(
        shown.matches("\"inv-").count() >= 6,
        "two turns' calls, results and answers: {shown}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_defaults_agents_to_adk_and_perf_drives_them_over_http() {
    let dir = tmp("fw-serve");
    let db = dir.join("served.db");
    let Served {
        child: mut server,
        url,
        mut stderr,
        ..
    } = start_serve(
        &[
            "--bind",
            "127.0.0.1:0",
            "--time-scale",
            "0",
            "--framework",
            "adk",
            "--store-path",
            db.to_str().unwrap(),
            "--allow-anonymous",
        ],
        &[],
    );
    let summary = dir.join("over-http.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "burst_load",
        "--iterations",
        "50",
        "--concurrency",
        "4",
        "--target",
        &url,
        "--output",
        summary.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(v["requests"]["succeeded"], 50, "{}", v["errors"]);
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    let status = server.wait().unwrap();
    assert!(status.success(), "{status}: {rest}");

    let list = aether(&["sessions", "list", "--store-path", db.to_str().unwrap(), "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let first = listed["sessions"][0]["session_id"]
        .as_str()
        .expect("a stored session")
        .to_owned();
    let show = aether(&[
        "sessions",
        "show",
        &first,
        "--store-path",
        db.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        text(&show.stdout).contains("adk_invocation_id"),
        "agents created without a framework ran on adk: {}",
        text(&show.stdout)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn perf_versus_interleaves_frameworks_and_writes_the_table() {
    let dir = tmp("fw-versus");
    let out = aether(&[
        "perf",
        "versus",
        "--scenario",
        "burst_load",
        "--rounds",
        "2",
        "--quiet",
        "--output",
        dir.to_str().unwrap(),
        "--",
        "--iterations",
        "100",
        "--concurrency",
        "4",
        "--time-scale",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(md.contains("| metric | native | adk | adk / native |"), "{md}");
    assert!(md.contains("framework overhead p50"), "{md}");
    assert!(md.contains("SIMULATED"), "{md}");
    for f in [
        "native-r1.json",
        "adk-r1.json",
        "native-r2.json",
        "adk-r2.json",
        "versus.json",
        "versus.html",
        "report.html",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("versus.json")).unwrap()).unwrap();
    assert_eq!(v["rounds"], 2);
    let overhead = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "framework overhead p50 (µs)")
        .unwrap();
    assert!(overhead["ratios"][0]["median"].as_f64().unwrap() > 0.0);
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for run in ["native-r1", "adk-r1", "native-r2", "adk-r2"] {
        assert!(report.contains(run), "the report overlays every run: {run}");
    }
    let adk: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("adk-r2.json")).unwrap()).unwrap();
    assert_eq!(adk["config"]["framework"], "adk");
    std::fs::remove_dir_all(&dir).unwrap();
}
