//! Tools: resolver rules, schema validation, concurrent fan-out, timeouts, errors, panics and
//! blocking tools.

mod common;

use std::time::Duration;

use aether_contracts::{ErrorCode, Metadata, TaskStatus, ToolStatus};
use aether_runtime::tools::{BlockingTool, FnTool, RegisteredTool, ResolveError, ToolContext, ToolError};
use aether_runtime::Runtime;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn resolver_exact_then_unique_suffix_then_suggestions() {
    let rt = builder(0, 0)
        .tool(
            RegisteredTool::new_async(
                tool_spec("other.fx_quote", json!({"type": "object"})),
                FnTool(|_: Metadata, _: ToolContext| async { Ok::<_, ToolError>(Value::Null) }),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let tools = rt.tools();
    assert_eq!(&*tools.resolve("demo.crm_lookup").unwrap().full_name, "demo.crm_lookup");
    assert_eq!(
        &*tools.resolve("crm_lookup").unwrap().full_name,
        "demo.crm_lookup",
        "unique suffix"
    );
    assert_eq!(&*tools.resolve("echo").unwrap().full_name, "builtin.echo");
    match tools.resolve("fx_quote") {
        Err(ResolveError::Ambiguous { candidates, .. }) => {
            assert_eq!(candidates, ["demo.fx_quote", "other.fx_quote"])
        }
        other => panic!("expected ambiguous, got {other:?}"),
    }
    assert_eq!(
        &*tools.resolve("other.fx_quote").unwrap().full_name,
        "other.fx_quote",
        "exact wins"
    );
    match tools.resolve("crm_lokup") {
        Err(ResolveError::NotFound { suggestions, .. }) => {
            assert_eq!(suggestions.first().map(String::as_str), Some("demo.crm_lookup"))
        }
        other => panic!("expected not found, got {other:?}"),
    }
    assert!(
        matches!(tools.resolve("billing.crm_lookup"), Err(ResolveError::NotFound { .. })),
        "a namespaced name never falls back to another namespace"
    );

    // At agent creation an unknown tool is a clear error with suggestions.
    let r = rt
        .process(aether_contracts::TaskRequest::create_agent("c", config(&["aml_check"])))
        .await;
    let e = r.error.unwrap();
    assert_eq!(e.code, ErrorCode::ToolNotDeclared);
    assert!(e.message.contains("did you mean `demo.aml_checker`"), "{e}");
}

#[test]
fn registration_rejects_bad_names_schemas_and_duplicates() {
    let noop = || FnTool(|_: Metadata, _: ToolContext| async { Ok::<_, ToolError>(Value::Null) });
    let e = RegisteredTool::new_async(tool_spec("nonamespace", json!({})), noop()).unwrap_err();
    assert!(e.to_string().contains("namespace.name"), "{e}");
    let e = RegisteredTool::new_async(tool_spec("a.b c", json!({})), noop()).unwrap_err();
    assert!(e.to_string().contains("letters, digits"), "{e}");
    let e = RegisteredTool::new_async(tool_spec("a.b", json!({"type": 12})), noop()).unwrap_err();
    assert!(
        e.to_string().contains("invalid parameters_schema for tool `a.b`"),
        "{e}"
    );
    let dup = builder(0, 0).tool(aether_runtime::tools::builtin::echo()).build();
    assert!(matches!(dup, Err(aether_runtime::BuildError::Tool(_))));
}

#[test]
fn schema_validation_names_each_field() {
    let rt = builder(0, 0).config(quiet_config()).build().unwrap();
    let aml = rt.tools().resolve("aml_checker").unwrap();
    let mut p = Metadata::new();
    p.insert("account_id".into(), json!(7));
    p.insert("colour".into(), json!("red"));
    let e = aml.validate(&p).unwrap_err();
    assert!(e.contains("parameters/account_id: 7 is not of type \"string\""), "{e}");
    assert!(e.contains("\"amount\" is a required property"), "{e}");
    assert!(e.contains("colour"), "{e}");
    assert!(aml.validate(aml.sample_arguments()).is_ok(), "the examples are valid");
}

const FIVE: [&str; 5] = ["crm_lookup", "doc_indexer", "aml_checker", "kyc_screen", "fx_quote"];

#[tokio::test(start_paused = true)]
async fn five_tools_run_concurrently_in_one_turn() {
    let rt = builder(0, 100).build().unwrap();
    let one = create(&rt, config(&FIVE[..1])).await;
    let five = create(&rt, config(&FIVE)).await;
    let single = turn(&rt, &one, "a", "go").await;
    let fan = turn(&rt, &five, "b", "go").await;
    assert_eq!(fan.tool_results.len(), 5);
    assert!(fan.tool_results.iter().all(|r| r.status == ToolStatus::Success));
    let tool_us = |r| meta(r, "timing.tool_us").as_f64().unwrap();
    assert!(tool_us(&single) >= 100_000.0);
    assert!(
        tool_us(&fan) < 2.0 * tool_us(&single),
        "5 tools took {} µs vs {} µs for one",
        tool_us(&fan),
        tool_us(&single)
    );
    assert_eq!(
        meta(&fan, "timing.model_calls"),
        &json!(2),
        "tools first, then the answer"
    );
    assert!(fan.response_text().unwrap().contains("5 of 5 tool calls succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_tools_of_100ms_take_about_the_time_of_one_in_real_time() {
    let rt = builder(0, 100).build().unwrap();
    let one = create(&rt, config(&FIVE[..1])).await;
    let five = create(&rt, config(&FIVE)).await;
    let t = std::time::Instant::now();
    assert!(turn(&rt, &one, "a", "go").await.is_success());
    let single = t.elapsed();
    let t = std::time::Instant::now();
    assert!(turn(&rt, &five, "b", "go").await.is_success());
    let fan = t.elapsed();
    assert!(fan < 2 * single, "5 tools took {fan:?} vs {single:?} for one");
}

struct SleepyBlocking;

impl BlockingTool for SleepyBlocking {
    fn call(&self, _p: Metadata, _c: ToolContext) -> Result<Value, ToolError> {
        std::thread::sleep(Duration::from_millis(20));
        Ok(json!({"blocked": "off the workers"}))
    }
}

fn failing_tools() -> Vec<RegisteredTool> {
    let obj = json!({"type": "object"});
    vec![
        RegisteredTool::new_async(
            tool_spec("test.slow", obj.clone()),
            FnTool(|_: Metadata, _: ToolContext| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, ToolError>(Value::Null)
            }),
        )
        .unwrap()
        .with_timeout(Duration::from_millis(50)),
        RegisteredTool::new_async(
            tool_spec("test.fails", obj.clone()),
            FnTool(|_: Metadata, _: ToolContext| async { Err::<Value, _>(ToolError::new("upstream CRM refused")) }),
        )
        .unwrap(),
        RegisteredTool::new_async(
            tool_spec("test.panics", obj.clone()),
            FnTool(|_: Metadata, _: ToolContext| async { panic!("tool bug") }),
        )
        .unwrap(),
        RegisteredTool::new_blocking(tool_spec("test.blocking", obj), SleepyBlocking).unwrap(),
        // Its example breaks its own schema, so the model's call fails validation.
        RegisteredTool::new_async(
            tool_spec(
                "test.strict",
                json!({"type": "object", "properties": {"n": {"type": "integer", "examples": ["not a number"]}}, "required": ["n"]}),
            ),
            FnTool(|_: Metadata, _: ToolContext| async { Ok::<_, ToolError>(Value::Null) }),
        )
        .unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_errors_panics_and_bad_parameters_become_tool_results_not_failed_turns() {
    let mut b = builder(0, 0);
    for t in failing_tools() {
        b = b.tool(t);
    }
    let rt = b.build().unwrap();
    let agent = create(
        &rt,
        config(&["test.slow", "test.fails", "test.panics", "test.blocking", "test.strict"]),
    )
    .await;
    let r = turn(&rt, &agent, "s", "go").await;
    assert_eq!(r.status, TaskStatus::Success, "{:?}", r.error);
    let by_name = |n: &str| r.tool_results.iter().find(|t| t.tool_name == n).unwrap();

    let slow = by_name("test.slow");
    assert_eq!(slow.status, ToolStatus::Timeout);
    assert!(slow.error_message.as_ref().unwrap().contains("timed out after 50ms"));
    let fails = by_name("test.fails");
    assert_eq!(fails.status, ToolStatus::Error);
    assert_eq!(fails.error.as_ref().unwrap().code, ErrorCode::ToolExecution);
    assert_eq!(fails.error_message.as_deref(), Some("upstream CRM refused"));
    let panics = by_name("test.panics");
    assert_eq!(panics.status, ToolStatus::Error);
    assert!(panics.error_message.as_ref().unwrap().contains("panicked"));
    assert_eq!(by_name("test.blocking").status, ToolStatus::Success);
    let strict = by_name("test.strict");
    assert_eq!(strict.error.as_ref().unwrap().code, ErrorCode::ToolInvalidParameters);
    assert!(
        strict.error_message.as_ref().unwrap().contains("parameters/n"),
        "{:?}",
        strict.error_message
    );
    assert!(r.response_text().unwrap().contains("1 of 5 tool calls succeeded"));
}

#[tokio::test(start_paused = true)]
async fn agent_tool_timeout_applies_and_a_single_panicking_tool_does_not_fail_the_turn() {
    let mut b = builder(0, 0);
    for t in failing_tools() {
        b = b.tool(t);
    }
    let rt = b.build().unwrap();
    let agent = create(&rt, config(&["test.panics"])).await;
    let r = turn(&rt, &agent, "p", "go").await;
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(r.tool_results[0].status, ToolStatus::Error);

    let mut cfg = config(&["crm_lookup"]);
    cfg.framework_config.insert("tool_timeout_s".into(), json!(0.01));
    let rt = builder(0, 100).build().unwrap();
    let agent = create(&rt, cfg).await;
    let r = turn(&rt, &agent, "t", "go").await;
    assert_eq!(r.tool_results[0].status, ToolStatus::Timeout);
}

#[tokio::test]
async fn tool_calls_can_be_steered_per_request() {
    let rt: Runtime = builder(0, 0).build().unwrap();
    let agent = create(&rt, config(&FIVE)).await;
    let mut req = turn_request(&agent, "s", "go");
    req.metadata.insert("sim_tool_calls".into(), json!(2));
    assert_eq!(rt.process(req).await.tool_results.len(), 2);
    let mut req = turn_request(&agent, "s2", "go");
    req.metadata.insert("sim_tools".into(), json!(["fx_quote"]));
    let r = rt.process(req).await;
    assert_eq!(r.tool_results.len(), 1);
    assert_eq!(r.tool_results[0].tool_name, "demo.fx_quote");
    let r = turn(&rt, &agent, "s3", "please run kyc_screen only").await;
    assert_eq!(r.tool_results.len(), 1, "a tool named in the message is the one called");
    let r = turn(&rt, &agent, "s4", "go").await;
    assert_eq!(r.tool_results.len(), 5);
    // Same parameters, same result: the demo tools are deterministic.
    assert_eq!(
        r.tool_results[0].result_data,
        turn(&rt, &agent, "s5", "go").await.tool_results[0].result_data
    );
}

#[test]
fn a_namespace_is_replaced_in_one_step_or_not_at_all() {
    let rt = builder(0, 0).build().unwrap();
    let tools = rt.tools();
    let noop = |name: &str| {
        RegisteredTool::new_async(
            tool_spec(name, json!({"type": "object"})),
            FnTool(|_: Metadata, _: ToolContext| async { Ok::<_, ToolError>(Value::Null) }),
        )
        .unwrap()
    };
    assert_eq!(
        tools
            .replace_namespace("srv", vec![noop("srv.a"), noop("srv.b")])
            .unwrap(),
        2
    );
    assert!(tools.resolve("srv.a").is_ok() && tools.resolve("srv.b").is_ok());
    assert_eq!(tools.replace_namespace("srv", vec![noop("srv.c")]).unwrap(), 1);
    assert!(tools.resolve("srv.a").is_err(), "the old list is gone");
    assert!(tools.resolve("srv.c").is_ok());
    // A foreign or repeated name changes nothing.
    assert!(tools
        .replace_namespace("srv", vec![noop("srv.d"), noop("demo.x")])
        .is_err());
    assert!(tools
        .replace_namespace("srv", vec![noop("srv.d"), noop("srv.d")])
        .is_err());
    assert!(tools.resolve("srv.c").is_ok() && tools.resolve("srv.d").is_err());
    assert!(tools.resolve("demo.crm_lookup").is_ok(), "other namespaces untouched");
}
