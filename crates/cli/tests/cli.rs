//! The `aether` binary, run as a user would: exit codes, outputs and errors.

mod common;

use common::*;

#[test]
fn chat_runs_turns_on_the_simulated_model_and_says_so() {
    let out = aether(&[
        "chat",
        "--time-scale",
        "0",
        "--tools",
        "crm_lookup,fx_quote",
        "-p",
        "hi",
        "-p",
        "again",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("simulated model"), "{stdout}");
    assert!(stdout.contains("turn 2"), "{stdout}");
    assert!(stdout.contains("tool demo.crm_lookup → success"), "{stdout}");
}

#[test]
fn chat_json_prints_task_results() {
    let out = aether(&["chat", "--time-scale", "0", "--json", "-p", "hi"]);
    assert!(out.status.success());
    let line = text(&out.stdout);
    let r: aether_contracts::TaskResult = aether_contracts::from_json_str(line.trim()).expect("a TaskResult");
    assert!(r.is_success());
    assert_eq!(r.metadata["provider"]["simulated"], serde_json::json!(true));
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let out = aether(&["chat", "--tools", "crm_lokup"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `demo.crm_lookup`"));

    let out = aether(&["chat", "--time-scale", "-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--time-scale must be a number >= 0"));

    let out = aether(&["chat", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));

    // A model endpoint's URL is checked before anything runs (not at its first call, retried).
    let out = aether(&[
        "chat",
        "--provider",
        "openai",
        "--base-url",
        "http://model host:8000/v1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--base-url `http://model host:8000/v1` is not a valid URL"),
        "{}",
        text(&out.stderr)
    );

    let out = aether(&["models", "--sim-profiles", "/nonexistent/profiles.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/profiles.toml"));
}

#[test]
fn validate_names_the_bad_field() {
    let dir = tmp("validate");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"task_id": "t", "messages": [{"role": "user", "content": 7}]}"#,
    )
    .unwrap();
    let out = aether(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("messages[0].content"),
        "{}",
        text(&out.stderr)
    );
    let good = dir.join("good.json");
    std::fs::write(&good, r#"{"agent_type": "chat", "model_config": {"model": "gpt-4o"}}"#).unwrap();
    let out = aether(&["validate", "--kind", "agent-config", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn tools_and_models_list_what_is_available() {
    let out = aether(&["tools"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    for t in [
        "builtin.echo",
        "builtin.timestamp",
        "demo.crm_lookup",
        "demo.stock_quote",
    ] {
        assert!(s.contains(t), "{t} missing from:\n{s}");
    }
    let out = aether(&["models"]);
    let s = text(&out.stdout);
    for m in [
        "gemini-1.5-pro",
        "gemini-1.5-flash",
        "gpt-4o",
        "gpt-4o-mini",
        "deepseek-chat",
        "o200k_base",
        "Timing model",
        "max_tokens cuts it",
        "streamed = the same total latency",
    ] {
        assert!(s.contains(m), "{m} missing from:\n{s}");
    }
}

mod wire {
    //! The wire contract, frozen: what a client sees from `POST /v1/tasks`, the SSE chunks of a live
    //! turn with a tool and an approval, `aether chat --json` and a `perf run` summary are compared
    //! with fixtures recorded from the code before the one-path refactor (part 8). Only ids,
    //! timestamps and measured numbers are normalised; every key, type, enum value and text stays.
    //!
    //! Re-record (only for an intended wire change, and say so in the commit):
    //! `AETHER_RECORD_WIRE=1 cargo test -p aether-cli --test cli wire`.

    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    use crate::common::{aether, text, tmp};
    use aether_runtime::approvals::ApprovalConfig;
    use aether_runtime::model::SimConfig;
    use aether_runtime::tools::demo::DemoToolConfig;
    use aether_runtime::{Runtime, RuntimeConfig};
    use aether_server::{AppState, ServerConfig};
    use serde_json::{json, Value};

    /// Keys whose string values are generated ids.
    const ID_KEYS: &[&str] = &[
        "agent_id",
        "internal_session_id",
        "runner_id",
        "interaction_id",
        "author",
        "git_commit",
        "host",
        "hostname",
        "machine",
        "cpu_model",
        "output",
        "path",
        "location",
        // Provenance, and the HDR histograms (compressed, base64) of a perf summary.
        "command",
        "os",
        "data",
        "latency",
        "ttft",
        "itl",
    ];

    /// Keys whose values are measurements even when they are not durations.
    fn measured(key: &str) -> bool {
        key.ends_with("_us")
            || key.ends_with("_ms")
            || key.ends_with("_s")
            || key.ends_with("_ns")
            || key.ends_with("_bytes")
            || key.ends_with("_mb")
            || key.ends_with("_pct")
            || key.ends_with("_rps")
            || key.ends_with("_per_s")
            || matches!(
                key,
                "execution_time" | "expires_at" | "timestamp" | "started_at" | "finished_at"
            )
    }

    fn is_timestamp(s: &str) -> bool {
        chrono::DateTime::parse_from_rfc3339(s).is_ok()
    }

    /// Replaces ids, timestamps and measurements with placeholders. With `all_numbers`, every
    /// number (and null) becomes `<num>`, digits in notes become `#`, and runs of equal elements
    /// fold into one (a perf summary is all measurement): the shape is what is compared.
    fn normalise(v: &mut Value, key: &str, all_numbers: bool) {
        match v {
            Value::Object(m) => m.iter_mut().for_each(|(k, v)| normalise(v, k, all_numbers)),
            Value::Array(a) => {
                a.iter_mut().for_each(|v| normalise(v, key, all_numbers));
                if all_numbers {
                    // Series of samples: their length is a measurement too.
                    a.dedup();
                }
            }
            Value::String(s) if ID_KEYS.contains(&key) => *s = "<id>".into(),
            // A note may quote a measurement ("not judged: 1 s of samples ...").
            Value::String(s) if all_numbers && key == "note" => {
                *s = s.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect()
            }
            Value::String(s) if is_timestamp(s) => *s = "<time>".into(),
            Value::Number(_) if all_numbers || measured(key) => *v = Value::from("<num>"),
            // A figure that a short run cannot judge is null, a longer one's is a number.
            Value::Null if all_numbers => *v = Value::from("<num>"),
            _ => {}
        }
    }

    fn fixture_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/wire")
            .join(name)
    }

    /// Compares `actual` (normalised) with the fixture `name`, or records it when asked to.
    fn check(name: &str, mut actual: Value, all_numbers: bool) {
        normalise(&mut actual, "", all_numbers);
        let path = fixture_path(name);
        if std::env::var_os("AETHER_RECORD_WIRE").is_some() && std::env::var_os("CI").is_none() {
            std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
            return;
        }
        let recorded = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "fixture {} missing ({e}); record it with AETHER_RECORD_WIRE=1",
                path.display()
            )
        });
        let expected: Value = serde_json::from_str(&recorded).unwrap();
        if expected != actual {
            let got = serde_json::to_string_pretty(&actual).unwrap();
            panic!(
                "the wire changed: {} differs from what the code sends now:\n{got}",
                path.display()
            );
        }
    }

    /// Drops keys whose presence depends on the machine (GPU, git availability).
    fn strip(v: &mut Value, keys: &[&str]) {
        if let Value::Object(m) = v {
            for k in keys {
                m.remove(*k);
            }
        }
    }

    async fn start_server() -> (String, tokio::sync::oneshot::Sender<()>) {
        let mut approvals = HashMap::new();
        approvals.insert("aml_checker".to_owned(), true);
        let rt = Runtime::builder()
            .config(RuntimeConfig {
                sweep_interval: None,
                approvals: ApprovalConfig {
                    tools: approvals,
                    ..ApprovalConfig::default()
                },
                ..RuntimeConfig::default()
            })
            .simulated_model(SimConfig {
                time_scale: 0.0,
                ..SimConfig::default()
            })
            .demo_tools(DemoToolConfig {
                time_scale: 0.0,
                ..DemoToolConfig::default()
            })
            .build()
            .unwrap();
        let mut cfg = ServerConfig::default();
        cfg.add_env_keys("key-acme=acme").unwrap();
        cfg.validate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(Arc::new(rt), &cfg);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(aether_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        (base, stop)
    }

    async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
        let r = http.post(url).bearer_auth("key-acme").json(&body).send().await.unwrap();
        r.json().await.unwrap()
    }

    /// Reads server-sent events to the end of the stream, answering the first approval request.
    async fn live_chunks(http: &reqwest::Client, base: &str, body: Value) -> Vec<Value> {
        let mut resp = http
            .post(format!("{base}/v1/tasks/stream"))
            .bearer_auth("key-acme")
            .json(&body)
            .send()
            .await
            .unwrap();
        let task = body["task_id"].as_str().unwrap().to_owned();
        let mut buf = String::new();
        let mut chunks = Vec::new();
        loop {
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                    continue;
                };
                let event = frame.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("");
                let chunk: Value = serde_json::from_str(data).unwrap();
                if chunk["chunk_type"] == "tool_approval_request" {
                    let id = chunk["interaction_id"].as_str().unwrap();
                    let url = format!("{base}/v1/live/{task}/approvals/{id}");
                    let r = http
                        .post(url)
                        .bearer_auth("key-acme")
                        .json(&json!({"approved": true, "user_message": "go ahead"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                }
                chunks.push(json!({ "event": event, "data": chunk }));
            }
            match resp.chunk().await.unwrap() {
                Some(bytes) => buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return chunks,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_task_answers_and_live_chunks_match_the_recorded_wire() {
        let (base, stop) = start_server().await;
        let http = reqwest::Client::new();
        let agent = |tools: &[&str]| {
            json!({"agent_type": "support", "system_prompt": "Be brief.",
                   "model_config": {"model": "gpt-4o-mini"}, "available_tools": tools})
        };

        // Step one and step two of the protocol through POST /v1/tasks, with a tool call.
        let created = post(
            &http,
            format!("{base}/v1/tasks"),
            json!({"task_id": "create-1", "agent_config": agent(&["crm_lookup"])}),
        )
        .await;
        let agent_id = created["agent_id"].as_str().unwrap().to_owned();
        let turn = post(
            &http,
            format!("{base}/v1/tasks"),
            json!({"task_id": "turn-1", "agent_id": agent_id, "session_id": "wire-1",
                   "messages": [{"role": "user", "content": "Look up customer C-1001."}]}),
        )
        .await;
        check("tasks.json", json!({ "create": created, "turn": turn }), false);

        // A live turn with a tool that needs approval, approved through the API.
        let risky = post(&http, format!("{base}/v1/agents"), agent(&["aml_checker"])).await;
        let risky = risky["agent_id"].as_str().unwrap().to_owned();
        let chunks = live_chunks(
            &http,
            &base,
            json!({"task_id": "live-1", "agent_id": risky, "session_id": "wire-2",
                   "messages": [{"role": "user", "content": "Screen this transfer."}]}),
        )
        .await;
        check("live.sse.json", Value::Array(chunks), false);
        let _ = stop.send(());
    }

    #[test]
    fn chat_json_matches_the_recorded_wire() {
        let dir = tmp("wire-chat");
        let store = dir.join("chat.db");
        let out = aether(&[
            "chat",
            "--time-scale",
            "0",
            "--tools",
            "crm_lookup",
            "--store-path",
            store.to_str().unwrap(),
            "--json",
            "-p",
            "Look up customer C-1001.",
            "-p",
            "Thanks.",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let lines: Vec<Value> = text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        check("chat.jsonl.json", Value::Array(lines), false);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn perf_summary_matches_the_recorded_wire() {
        let dir = tmp("wire-perf");
        let summary = dir.join("summary.json");
        let out = aether(&[
            "perf",
            "run",
            "--scenario",
            "latency_smoke",
            "--iterations",
            "20",
            "--concurrency",
            "2",
            "--time-scale",
            "0",
            "--output",
            summary.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut v: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        strip(&mut v, &["gpu"]);
        // How many intervals a run spans depends on the clock, and so does which of them holds
        // the sampler's last reading (a run that crosses a second's boundary completes its
        // requests in one row and is sampled in the next): the rows' keys together, in one row
        // that completed requests, stand for the shape of them all.
        let rows = v["timeline"]["rows"].as_array_mut().unwrap();
        let mut shape = rows
            .iter()
            .find(|r| r["requests"].as_u64() > Some(0))
            .cloned()
            .expect("a row that completed requests");
        for r in rows.iter() {
            for (k, value) in r.as_object().unwrap() {
                shape
                    .as_object_mut()
                    .unwrap()
                    .entry(k.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        *rows = vec![shape];
        // Which requests were slowest is the machine's business: one stands for their shape.
        let slowest = v["slowest"].as_array_mut().unwrap();
        assert_eq!(slowest.len(), 10, "the ten slowest of the run's requests");
        slowest.truncate(1);
        slowest[0]["task_id"] = Value::from("<task id>");
        check("perf-summary.json", v, true);
        std::fs::remove_dir_all(dir).ok();
    }
}
