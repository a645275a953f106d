//! The MCP client and hub against a real third-party server: `@modelcontextprotocol/server-everything`
//! over stdio (installed from npm by `scripts/install-mcp-servers.sh`): discovery and a refresh
//! after its list-changed notice, calls and error results, progress, a crashed server restarted,
//! cancellation. Turns with MCP tools and `aether mcp-serve` are tested in `aether-cli`.

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::Metadata;
use aether_mcp::{McpClient, McpHub, McpServerConfig};
use aether_tools::{ProgressSink, ToolContext, ToolProgress, ToolRegistry};
use serde_json::{json, Value};

/// How long any single wait in these tests may take before the test fails (not a sleep).
const PATIENCE: Duration = Duration::from_secs(20);

/// server-everything over stdio, or `None` (with the reason printed) when it is not installed
/// outside CI. In CI (`CI` set) a missing server fails the test: `.ci/run` installs it.
fn everything() -> Option<McpServerConfig> {
    aether_mcp::testing::server_everything()
}

fn ctx_with_progress() -> (ToolContext, tokio::sync::mpsc::Receiver<ToolProgress>) {
    let (sink, rx) = ProgressSink::channel(64);
    let mut ctx = ToolContext::detached("call-1");
    ctx.progress = Some(sink);
    (ctx, rx)
}

fn args(v: Value) -> Metadata {
    match v {
        Value::Object(m) => m,
        _ => panic!("arguments are an object"),
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_over_stdio_discovers_calls_fails_and_reports_progress() {
    let Some(cfg) = everything() else { return };
    let registry = Arc::new(ToolRegistry::new());
    let hub = McpHub::attach(Arc::clone(&registry), vec![cfg]).await.unwrap();
    for t in [
        "everything.echo",
        "everything.get-sum",
        "everything.trigger-long-running-operation",
    ] {
        let tool = registry.resolve(t).unwrap_or_else(|e| panic!("{t} registered: {e}"));
        assert_eq!(tool.spec.metadata["mcp_server"], json!("everything"));
    }
    let echo = registry.resolve("everything.echo").unwrap();
    assert!(
        echo.validate(&Metadata::new()).unwrap_err().contains("message"),
        "the server's schema is enforced"
    );

    // The server registers more tools once initialised and says so: the list is read again.
    let client = hub.client("everything").unwrap();
    let mut generation = client.tools_generation();
    within("tool list refresh", generation.wait_for(|g| *g >= 2))
        .await
        .unwrap();

    let ctx = ToolContext::detached("c");
    let v = client.call("echo", args(json!({"message": "hi"})), &ctx).await.unwrap();
    assert!(v["text"].as_str().unwrap().contains("hi"), "{v}");
    let v = client
        .call("get-sum", args(json!({"a": 2, "b": 3})), &ctx)
        .await
        .unwrap();
    assert!(v.to_string().contains('5'), "{v}");
    let e = client
        .call("get-sum", args(json!({"a": "two", "b": 3})), &ctx)
        .await
        .unwrap_err();
    assert!(
        e.0.contains("MCP server `everything`") && e.0.contains("get-sum"),
        "{e}"
    );

    let (ctx, mut rx) = ctx_with_progress();
    let v = client
        .call(
            "trigger-long-running-operation",
            args(json!({"duration": 0.2, "steps": 4})),
            &ctx,
        )
        .await
        .unwrap();
    assert!(v["text"].as_str().unwrap().contains("completed"), "{v}");
    drop(ctx);
    let mut updates = Vec::new();
    while let Some(u) = rx.recv().await {
        updates.push(u);
    }
    assert_eq!(
        updates.iter().map(|u| u.progress).collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
    assert!(updates.iter().all(|u| u.total == Some(4.0) && &*u.call_id == "call-1"));
    assert_eq!(
        client.stats().sessions_opened,
        1,
        "one pooled session served every call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_stdio_server_fails_its_calls_and_is_restarted_and_cancel_reaches_it() {
    let Some(cfg) = everything() else { return };
    let client = McpClient::new(cfg).unwrap();
    client.connect().await.unwrap();
    let ctx = ToolContext::detached("c");
    client.call("echo", args(json!({"message": "a"})), &ctx).await.unwrap();
    let before = client.pids();
    assert_eq!(before.len(), 1);

    // A call in flight when the server dies fails at once, clearly.
    let (ctx_p, mut rx) = ctx_with_progress();
    let long = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call(
                    "trigger-long-running-operation",
                    args(json!({"duration": 30, "steps": 300})),
                    &ctx_p,
                )
                .await
        })
    };
    within("first progress", rx.recv())
        .await
        .expect("progress before the crash");
    // SAFETY: kill(2) on the server's own pid.
    assert_eq!(unsafe { libc::kill(before[0] as i32, libc::SIGKILL) }, 0);
    let err = within("the in-flight call to fail", long).await.unwrap().unwrap_err();
    assert!(err.0.contains("closed while") && err.0.contains("everything"), "{err}");

    // The next call restarts the server.
    let v = client.call("echo", args(json!({"message": "b"})), &ctx).await.unwrap();
    assert!(v["text"].as_str().unwrap().contains('b'));
    let after = client.pids();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "a new process");
    assert_eq!(client.stats().restarts, 1);

    // Dropping a running call tells the server to cancel; the session stays usable.
    let (ctx_p, mut rx) = ctx_with_progress();
    let cancelled = client.stats().cancelled;
    {
        let call = client.call(
            "trigger-long-running-operation",
            args(json!({"duration": 30, "steps": 300})),
            &ctx_p,
        );
        tokio::pin!(call);
        tokio::select! {
            _ = &mut call => panic!("a 30 s operation finished"),
            u = rx.recv() => assert!(u.is_some()),
        }
    }
    assert_eq!(client.stats().cancelled, cancelled + 1);
    let v = within(
        "a call after a cancel",
        client.call("echo", args(json!({"message": "c"})), &ctx),
    )
    .await;
    assert!(v.unwrap()["text"].as_str().unwrap().contains('c'));
    assert_eq!(client.stats().restarts, 1, "cancel does not cost the session");
    client.shutdown().await;
}
