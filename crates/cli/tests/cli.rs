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
    ] {
        assert!(s.contains(m), "{m} missing from:\n{s}");
    }
}
