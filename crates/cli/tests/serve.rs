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
        mut stderr,
    } = start_serve(
        &["--bind", "127.0.0.1:0", "--time-scale", "0", "--store", "memory"],
        &[("AETHER_API_KEYS", "test-key=team")],
    );
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
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(v["requests"]["succeeded"], 200, "{}", v["errors"]);
    assert_eq!(v["target"]["kind"], format!("http {url}"));
    assert_eq!(
        v["provider"]["simulated"], true,
        "the server's model is labelled: {}",
        v["provider"]
    );

    let out = aether(&[
        "perf",
        "run",
        "--scenario",
        "burst_load",
        "--target",
        &url,
        "--api-key",
        "wrong",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));

    // SIGTERM: drains and exits 0.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = server.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("stopped"), "{rest}");
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
