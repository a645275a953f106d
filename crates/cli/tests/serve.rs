//! `aether serve` as a process: starts, answers the harness over HTTP (`perf run --target`), refuses
//! bad settings, and stops cleanly on SIGTERM.

mod common;

use common::{aether, command, start_serve, text, tmp, Served};

#[test]
fn serve_runs_scenarios_over_http_and_stops_on_sigterm() {
    let Served {
        child: mut server,
        url,
        announced: line,
        stderr,
    } = start_serve(
        &[
            "--bind",
            "127.0.0.1:0",
            "--time-scale",
            "0",
            "--store",
            "memory",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ],
        &[("AETHER_API_KEYS", "test-key=team"), ("AETHER_ADMIN_KEYS", "ops-key")],
    );
    // Every output of the run, searched for the keys at the end. The server's log is read as it
    // comes (at debug level it would fill the pipe and stall the server).
    let mut outputs = vec![line.clone()];
    let log = common::drain(stderr);
    assert!(line.contains("SIMULATED"), "{line}");

    let dir = tmp("serve");
    let summary = dir.join("burst.json");
    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "burst_load",
        "--iterations",
        "200",
        "--concurrency",
        "8",
        "--target",
        &url,
        "--api-key",
        "test-key",
        "--output",
        summary.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    outputs.extend([text(&out.stdout), text(&out.stderr)]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(v["requests"]["succeeded"], 200, "{}", v["errors"]);
    assert_eq!(v["target"]["kind"], format!("http {url}"));
    assert_eq!(
        v["provider"]["simulated"], true,
        "the server's model is labelled: {}",
        v["provider"]
    );

    // burst_load against the server with the given keys and flags.
    let over_http = |keys: &[&str], extra: &[&str]| {
        let base = ["perf", "run", "--scenario", "burst_load", "--target", &url];
        aether(&[&base[..], keys, extra].concat())
    };
    let out = over_http(&["--api-key", "wrong-key-guess"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    outputs.extend([text(&out.stdout), text(&out.stderr)]);

    // With an admin key the time series holds the server's side: its memory, CPU and counters,
    // read at each interval.
    let series = dir.join("series.json");
    let out = over_http(
        &["--api-key", "test-key", "--admin-key", "ops-key"],
        &[
            "--duration",
            "2s",
            "--rate",
            "100",
            "--interval",
            "0.5",
            "--output",
            series.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    outputs.extend([text(&out.stdout), text(&out.stderr)]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&series).unwrap()).unwrap();
    assert_eq!(v["timeline"]["interval_s"], 0.5);
    let rows = v["timeline"]["rows"].as_array().unwrap();
    assert!(rows.len() >= 4, "2 s in half seconds: {}", rows.len());
    let sides: Vec<&serde_json::Value> = rows.iter().filter_map(|r| r.get("server")).collect();
    assert_eq!(sides.len(), rows.len(), "every interval read the server");
    assert!(sides.iter().all(|s| s["rss_bytes"].as_u64().unwrap() > 0));
    let turns: Vec<u64> = sides.iter().map(|s| s["turns"].as_u64().unwrap()).collect();
    assert!(
        turns.windows(2).all(|w| w[0] <= w[1]) && turns.last() > turns.first(),
        "{turns:?}"
    );
    assert!(sides.iter().skip(1).all(|s| s["cpu_pct"].as_f64().is_some()));

    // A tenant's key is not an admin key: refused before any load is sent.
    let out = over_http(&["--api-key", "test-key", "--admin-key", "test-key"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
    outputs.extend([text(&out.stdout), text(&out.stderr)]);

    // SIGTERM: drains and exits 0.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = server.wait().unwrap();
    let rest = log.join().unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("stopped"), "{rest}");
    assert!(rest.contains("\"level\":"), "the server logged JSON lines: {rest}");

    // Keys stay secret: no key (right or wrong) in any log line, error, summary or report.
    outputs.push(rest);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        outputs.push(format!(
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&std::fs::read(&path).unwrap())
        ));
    }
    for key in ["test-key", "ops-key", "wrong-key-guess"] {
        for o in &outputs {
            assert!(!o.contains(key), "`{key}` appears in an output:\n{o}");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn serve_refuses_to_start_without_keys_or_with_a_bad_config() {
    let out = aether(&["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("AETHER_API_KEYS"), "{}", text(&out.stderr));

    let dir = tmp("serve-config");
    let cfg = dir.join("serve.toml");
    std::fs::write(&cfg, "[[tenants]]\nname = \"acme\"\napi_key_sha256 = [\"abc\"]\n").unwrap();
    let out = aether(&["serve", "--bind", "127.0.0.1:0", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("tenants[0].api_key_sha256[0]"),
        "{}",
        text(&out.stderr)
    );

    // The provider may come from the environment too.
    let out = command(&["serve", "--bind", "127.0.0.1:0", "--allow-anonymous"])
        .env("AETHER_PROVIDER", "local")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--provider local needs"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(&cfg, "[limits]\nmax_in_flite = 3\n").unwrap();
    let out = aether(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--config",
        cfg.to_str().unwrap(),
        "--allow-anonymous",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("max_in_flite"), "{}", text(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}
