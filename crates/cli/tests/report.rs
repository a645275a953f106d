//! The readers of summaries as a user runs them: `perf report` (opened in Debian's chromium over
//! the DevTools protocol, every network request blocked), `perf merge` of segments, `perf gate`
//! and its exit codes, `perf history`, and their bad input.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// How long any single wait on the browser may take before the test fails (not a sleep).
const PATIENCE: Duration = Duration::from_secs(30);

/// The tests here load the machine (perf runs, a browser); the gate test compares the timings of
/// runs made seconds apart, so they take turns rather than disturb each other's measurements.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run_ok(args: &[&str]) -> String {
    let out = aether(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A `perf run` of `scenario` with `extra` flags, its summary at `out`.
fn perf_run(scenario: &str, out: &Path, extra: &[&str]) {
    let mut args = vec!["perf", "run", "--scenario", scenario, "-q", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_ok(&args);
}

#[test]
fn segments_merge_into_the_summary_of_the_whole_run() {
    let _turn = one_at_a_time();
    let dir = tmp("merge");
    let (a, b, m) = (dir.join("s1.json"), dir.join("s2.json"), dir.join("merged.json"));
    let common = ["--iterations", "41", "--concurrency", "5", "--time-scale", "0"];
    perf_run("burst_load", &a, &[&common[..], &["--segment", "1/2"]].concat());
    perf_run("burst_load", &b, &[&common[..], &["--segment", "2/2"]].concat());
    let (va, vb) = (read(&a), read(&b));
    assert_eq!(
        (va["requests"]["total"].as_u64(), vb["requests"]["total"].as_u64()),
        (Some(20), Some(21))
    );
    assert_eq!(va["config"]["segment"], json!({"index": 1, "count": 2}));
    assert_eq!(
        (
            va["config"]["concurrency"].as_u64(),
            vb["config"]["concurrency"].as_u64()
        ),
        (Some(2), Some(3))
    );

    let merge = |x: &Path, y: &Path| {
        aether(&[
            "perf",
            "merge",
            x.to_str().unwrap(),
            y.to_str().unwrap(),
            "-o",
            m.to_str().unwrap(),
        ])
    };
    let out = merge(&a, &b);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("merged 2 summaries"));
    let v = read(&m);
    assert_eq!(v["requests"]["total"], 41);
    assert_eq!(v["latency_ms"]["count"], 41, "the histograms added up");
    assert_eq!(v["config"]["concurrency"], 5);
    assert!(v["config"].get("segment").is_none());
    let rows: u64 = v["timeline"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, 41, "the time series added up");
    assert!(v["kpis"].as_array().is_some_and(|k| !k.is_empty()), "judged again");

    // Bad input: another scenario, a file that is not there, a bad segment.
    let other = dir.join("other.json");
    perf_run("latency_smoke", &other, &["--time-scale", "0"]);
    let out = merge(&a, &other);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("only runs of one scenario merge"),
        "{}",
        text(&out.stderr)
    );
    let out = aether(&["perf", "run", "--scenario", "burst_load", "--segment", "3/2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("1 <= i <= n"), "{}", text(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_gate_passes_unchanged_runs_and_fails_a_slower_model() {
    let _turn = one_at_a_time();
    let dir = tmp("gate-n");
    let base = dir.join("baselines");
    let b = base.to_str().unwrap().to_owned();
    let gate_with = |extra: &[&str]| {
        let head = ["perf", "gate", "--baseline", &b, "--scenarios", "latency_smoke"];
        aether(&[&head[..], extra].concat())
    };
    let gate = |model_ms: &str, out: &str| {
        let out = dir.join(out);
        // What is judged here is the gate's rule on a 2× slower model (latency p50, 20 → 40 ms).
        // The microsecond figures and the tail of 30 requests, in a debug build on a shared 2-core
        // machine, move by ±50 % between unchanged runs: their thresholds are opened so that noise
        // cannot fail the test.
        let flags = [
            "--repeat",
            "3",
            "--iterations",
            "30",
            "--concurrency",
            "3",
            "-q",
            "--threshold",
            "overhead_us.p50=1000",
            "--threshold",
            "agents.create_ms.p50=1000",
            "--threshold",
            "latency_ms.p95=1000",
            "--threshold",
            "latency_ms.p99=1000",
        ];
        gate_with(
            &[
                &flags[..],
                &["--model-latency-ms", model_ms, "-o", out.to_str().unwrap()],
            ]
            .concat(),
        )
    };
    // The first gate has no baseline: its runs become the baseline.
    let out = gate("20", "first");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_dir(&base).unwrap().count(),
        3,
        "three runs stored as baselines"
    );
    // Unchanged: exit 0.
    let out = gate("20", "same");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        std::fs::read_to_string(dir.join("same/checklist.md")).unwrap_or_default()
    );
    let checklist = std::fs::read_to_string(dir.join("same/checklist.md")).unwrap();
    assert!(
        checklist.contains("✅ PASS") && checklist.contains("median"),
        "{checklist}"
    );
    let json = read(&dir.join("same/checklist.json"));
    assert_eq!(json["passed"], true);
    assert_eq!(json["scenarios"][0]["baselines"].as_array().unwrap().len(), 3);
    assert!(dir.join("same/report.html").is_file());
    // The model twice as slow: exit 1, and the checklist says which figure.
    let out = gate("40", "slow");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("readiness gate failed for: latency_smoke"),
        "{}",
        text(&out.stderr)
    );
    let checklist = std::fs::read_to_string(dir.join("slow/checklist.md")).unwrap();
    assert!(
        checklist.contains("❌ regression") && checklist.contains("latency p50 (ms)"),
        "{checklist}"
    );
    assert_eq!(
        std::fs::read_dir(&base).unwrap().count(),
        6,
        "a failed gate does not move the baseline"
    );

    // The history groups them as one comparable series of nine runs.
    let html = dir.join("history.html");
    let out = run_ok(&[
        "perf",
        "history",
        base.to_str().unwrap(),
        dir.join("slow").to_str().unwrap(),
        "-o",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.matches("### latency_smoke").count(), 1, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("| latency_smoke-")).count(),
        9,
        "{out}"
    );
    assert!(std::fs::read_to_string(&html).unwrap().contains("svg class=\"chart\""));

    let out = gate_with(&["--threshold", "nope=3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown figure `nope`"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_summaries_are_named_with_what_is_wrong() {
    let _turn = one_at_a_time();
    let dir = tmp("bad-summaries");
    let good = dir.join("good.json");
    perf_run("latency_smoke", &good, &["--time-scale", "0"]);
    let future = dir.join("future.json");
    std::fs::write(
        &future,
        r#"{"schema_version": 9, "scenario": "latency_smoke", "requests": {}}"#,
    )
    .unwrap();
    let truncated = dir.join("truncated.json");
    let full = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let other = dir.join("other.json");
    perf_run("burst_load", &other, &["--time-scale", "0"]);
    let g = good.to_str().unwrap();
    for (args, want) in [
        (
            vec!["perf", "report", future.to_str().unwrap()],
            "future.json` has schema_version 9; this version reads 1 and 2",
        ),
        (
            vec!["perf", "report", truncated.to_str().unwrap()],
            "truncated.json` is not valid JSON (it ends early",
        ),
        (
            vec!["perf", "report", g, "--baseline", other.to_str().unwrap()],
            "--baseline `",
        ),
        (
            vec!["perf", "merge", g, truncated.to_str().unwrap(), "-o", "/tmp/never.json"],
            "truncated",
        ),
        (vec!["perf", "compare", g, future.to_str().unwrap()], "schema_version 9"),
        (
            vec!["perf", "report", g, "--percentiles", "50,100"],
            "above 0 and below 100",
        ),
    ] {
        let out = aether(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(want), "{args:?}: {}", text(&out.stderr));
    }
    assert!(!Path::new("/tmp/never.json").exists(), "nothing half-written");
    std::fs::remove_dir_all(dir).ok();
}

// ---------------------------------------------------------------------------------------------
// The report in a real browser.

/// Debian's chromium, or `None` outside CI when it is not installed (in CI it must be).
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing: apt-get install chromium (.ci/run installs it)"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium)");
    }
    found
}

/// A DevTools-protocol session with one page. Every network request is failed (and counted);
/// console messages and exceptions are collected.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
    events: Vec<Value>,
    /// The one URL allowed to load: the report.
    document: String,
    blocked: Vec<String>,
}

impl Page {
    async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the browser answers in time")
                .expect("the browser is connected")
                .expect("a message");
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["method"] == "Fetch.requestPaused" {
                // The report file itself loads; every other request fails (and is counted).
                let url = v["params"]["request"]["url"].as_str().unwrap_or("").to_owned();
                let id = v["params"]["requestId"].clone();
                if url == self.document {
                    self.send_only("Fetch.continueRequest", json!({"requestId": id})).await;
                } else {
                    self.blocked.push(url);
                    self.send_only(
                        "Fetch.failRequest",
                        json!({"requestId": id, "errorReason": "BlockedByClient"}),
                    )
                    .await;
                }
                continue;
            }
            return v;
        }
    }

    async fn send_only(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).await.unwrap();
        id
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_only(method, params).await;
        loop {
            let v = self.recv().await;
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    async fn wait_for(&mut self, method: &str) {
        if self.events.iter().any(|e| e["method"] == method) {
            return;
        }
        loop {
            let v = self.recv().await;
            let done = v["method"] == method;
            if v.get("method").is_some() {
                self.events.push(v);
            }
            if done {
                return;
            }
        }
    }

    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true}))
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Console errors, uncaught exceptions and error log entries seen so far.
    fn errors(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| {
                (e["method"] == "Runtime.consoleAPICalled" && e["params"]["type"] == "error")
                    || e["method"] == "Runtime.exceptionThrown"
                    || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] == "error")
            })
            .collect()
    }
}

/// Starts headless chromium and opens a page session on it.
async fn open_browser(exe: &Path, profile: &Path) -> (std::process::Child, Page) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-gpu",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            &format!("--user-data-dir={}", profile.display()),
            "about:blank",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("ws://")) {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let browser_ws = rx
        .recv_timeout(PATIENCE)
        .expect("chromium announces its DevTools address");
    let http_base = browser_ws
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let targets: Value = reqwest::get(format!("http://{http_base}/json/list"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page_ws = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .expect("a page target")
        .to_owned();
    let (ws, _) = tokio_tungstenite::connect_async(page_ws.as_str()).await.unwrap();
    let page = Page {
        ws,
        next_id: 0,
        events: Vec::new(),
        document: String::new(),
        blocked: Vec::new(),
    };
    (child, page)
}

#[test]
fn the_report_renders_offline_in_chromium_with_every_chart_drawn() {
    let _turn = one_at_a_time();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(report_in_chromium());
}

async fn report_in_chromium() {
    let Some(exe) = chromium() else { return };
    let dir = tmp("report-browser");
    // Two runs of one scenario (overlaid, with deltas), and a live-turn scenario (its own section).
    let (a, b, live) = (dir.join("a.json"), dir.join("b.json"), dir.join("live.json"));
    let flags = ["--duration", "2500ms", "--rate", "80", "--interval", "0.5"];
    perf_run(
        "burst_load",
        &a,
        &[&flags[..], &["--model-latency-ms", "5", "--cpu-profile"]].concat(),
    );
    perf_run("burst_load", &b, &[&flags[..], &["--model-latency-ms", "10"]].concat());
    perf_run("stream_probe", &live, &["--time-scale", "0.2"]);
    // The first run also took a CPU profile, linked from its summary and from the report.
    assert!(read(&b).get("cpu_profile").is_none());
    let profiled = read(&a);
    let svg = dir.join(profiled["cpu_profile"]["flamegraph"].as_str().unwrap());
    let pb = dir.join(profiled["cpu_profile"]["pprof"].as_str().unwrap());
    assert_eq!(svg, dir.join("a.cpu.svg"));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    assert!(std::fs::metadata(&pb).unwrap().len() > 0);
    assert!(profiled["cpu_profile"]["note"]
        .as_str()
        .unwrap()
        .contains("load generator"));
    let html = dir.join("report.html");
    let out = run_ok(&[
        "perf",
        "report",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        live.to_str().unwrap(),
        "-o",
        html.to_str().unwrap(),
    ]);
    assert!(out.starts_with("report: "), "{out}");

    let profile = dir.join("profile");
    let (mut child, mut page) = open_browser(&exe, &profile).await;
    page.call("Fetch.enable", json!({"patterns": [{"urlPattern": "*"}]}))
        .await;
    page.call("Runtime.enable", json!({})).await;
    page.call("Log.enable", json!({})).await;
    page.call("Page.enable", json!({})).await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    let url = format!("file://{}", html.display());
    page.document = url.clone();
    page.call("Page.navigate", json!({"url": url})).await;
    page.wait_for("Page.loadEventFired").await;

    let facts = page
        .eval(
            r#"({
            title: document.title,
            sections: document.querySelectorAll('section.scenario').length,
            simulated: !!document.getElementById('simulated-banner'),
            charts: [...document.querySelectorAll('svg.chart')].map(s => ({
                title: s.getAttribute('aria-label'),
                points: Number(s.dataset.points),
                drawn: [...s.querySelectorAll('polyline')].map(p => p.getBBox().width + p.getBBox().height).reduce((a, b) => a + b, 0),
            })),
            profile: [...document.querySelectorAll('a.cpu-profile')].map(a => a.getAttribute('href')),
            tiles: [...document.querySelectorAll('section.scenario')].map(sec => [...sec.querySelectorAll('.tile')].map(t => ({
                kpi: t.dataset.kpi, value: t.dataset.value, shown: t.querySelector('.v').textContent,
                verdict: t.querySelector('.verdict').textContent,
            }))),
        })"#,
        )
        .await;
    // The page asked for nothing but itself.
    assert!(
        page.blocked.is_empty(),
        "the report asked for more than itself: {:?}",
        page.blocked
    );
    assert!(page.errors().is_empty(), "console errors: {:?}", page.errors());
    assert_eq!(facts["title"], "Aether Frame performance report");
    assert_eq!(facts["sections"], 2, "one section per scenario");
    assert_eq!(facts["simulated"], true);
    assert_eq!(
        facts["profile"],
        json!(["a.cpu.svg"]),
        "the report links the flame graph"
    );
    let charts = facts["charts"].as_array().unwrap();
    assert!(
        charts.len() >= 14,
        "spectrum and six over time per section, TTFT for live: {charts:?}"
    );
    for c in charts {
        assert!(c["points"].as_u64().unwrap() > 0, "chart without data: {c}");
        assert!(c["drawn"].as_f64().unwrap() > 0.0, "chart without a drawn line: {c}");
    }
    // The tiles of a section show its newest run's own KPI values.
    let newest = read(&b);
    let tiles = facts["tiles"][0].as_array().unwrap();
    let kpis = newest["kpis"].as_array().unwrap();
    assert_eq!(tiles.len(), kpis.len());
    for k in kpis {
        let tile = tiles
            .iter()
            .find(|t| t["kpi"] == k["name"])
            .unwrap_or_else(|| panic!("no tile for {k}"));
        match k["value"].as_f64() {
            Some(v) => {
                assert_eq!(tile["value"].as_str().unwrap().parse::<f64>().unwrap(), v, "{tile}");
                let shown: f64 = tile["shown"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((shown - v).abs() <= v.abs() * 1e-3 + 1e-4, "{tile} vs {v}");
            }
            None => assert_eq!(tile["value"], "", "{tile}"),
        }
        let verdict = match k["pass"].as_bool() {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "not judged",
        };
        assert_eq!(tile["verdict"], verdict);
    }

    // The screenshot, kept as an artifact.
    let shot = page
        .call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        )
        .await;
    let png = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    };
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("perf-report.png"), &png).unwrap();
    std::fs::copy(&html, artifacts.join("perf-report.html")).unwrap();
    eprintln!("screenshot: {}", artifacts.join("perf-report.png").display());

    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(dir).ok();
}
