//! The direct client of MCP's stateless protocol (2026-07-28) against a real rmcp server on
//! loopback HTTP: one POST per call and no session; a tool-list change reaches the registry
//! through `subscriptions/listen`; a server that only speaks the older revisions gets sessions,
//! and so does one that stops speaking the stateless protocol while the client is attached;
//! an unreachable server is a clear error. Progress, cancellation and the call's headers over
//! the direct client are tested against `aether mcp-serve --http` in `aether-cli`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use aether_mcp::{McpHub, McpServerConfig};
use aether_tools::{ToolContext, ToolRegistry};
use parking_lot::Mutex;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig, SubscriptionFilter,
    Tool,
};
use rmcp::service::{RequestContext, SubscriptionContext, SubscriptionSink};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler};
use serde_json::{json, Value};

/// How long any single wait in these tests may take before the test fails (not a sleep).
const PATIENCE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

/// A server whose `add` tool adds a tool and says so to every listener.
#[derive(Clone)]
struct Changing {
    tools: Arc<Mutex<Vec<Tool>>>,
    listeners: Arc<Mutex<Vec<SubscriptionSink>>>,
    /// The revisions it speaks (switched by a test: a server replaced by another version).
    versions: Arc<Mutex<&'static [ProtocolVersion]>>,
}

fn tool(name: &str) -> Tool {
    let schema = json!({"type": "object", "properties": {"message": {"type": "string"}}});
    let Value::Object(schema) = schema else { unreachable!() };
    Tool::new(
        name.to_owned(),
        format!("{name}: answers with its arguments"),
        Arc::new(schema),
    )
}

impl Changing {
    fn new(versions: &'static [ProtocolVersion]) -> Self {
        Self {
            tools: Arc::new(Mutex::new(vec![tool("echo"), tool("add")])),
            listeners: Arc::default(),
            versions: Arc::new(Mutex::new(versions)),
        }
    }
}

impl ServerHandler for Changing {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("changing", "1"))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(*self.versions.lock())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.lock().clone()))
    }

    /// rmcp checks a call's `Mcp-Param-*` headers against the schema this returns.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.lock().iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == "add" {
            let name = {
                let mut tools = self.tools.lock();
                let name = format!("added{}", tools.len() - 1);
                tools.push(tool(&name));
                name
            };
            let listeners = self.listeners.lock().clone();
            for l in listeners {
                let _ = l.notify_tool_list_changed().await;
            }
            return Ok(CallToolResult::structured(json!({ "added": name })).into());
        }
        if !self.tools.lock().iter().any(|t| t.name == request.name) {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        Ok(CallToolResult::structured(args).into())
    }

    fn accepted_subscription_filter(&self, _requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.listeners.lock().push(context.sink().clone());
        context.cancelled().await;
        Ok(())
    }
}

/// The server on a loopback port, with the headers of every POST it received.
struct Served {
    url: String,
    posts: Arc<Mutex<Vec<http::HeaderMap>>>,
}

async fn serve(handler: Changing) -> Served {
    let posts = Arc::new(Mutex::new(Vec::<http::HeaderMap>::new()));
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_json_response(true),
    );
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn({
            let posts = Arc::clone(&posts);
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                if req.method() == http::Method::POST {
                    posts.lock().push(req.headers().clone());
                }
                next.run(req)
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Served { url, posts }
}

fn message(text: &str) -> aether_contracts::Metadata {
    let Value::Object(m) = json!({ "message": text }) else {
        unreachable!()
    };
    m
}

/// A server speaking `versions`, attached as `name` to a new registry.
async fn attached(versions: &'static [ProtocolVersion], name: &str) -> (Served, Arc<ToolRegistry>, McpHub) {
    attached_to(Changing::new(versions), name).await
}

async fn attached_to(handler: Changing, name: &str) -> (Served, Arc<ToolRegistry>, McpHub) {
    let server = serve(handler).await;
    let registry = Arc::new(ToolRegistry::new());
    let hub = within(
        "attach",
        McpHub::attach(Arc::clone(&registry), vec![McpServerConfig::http(name, &server.url)]),
    )
    .await
    .unwrap();
    (server, registry, hub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_server_gets_one_post_per_call_and_its_list_changes_reach_the_registry() {
    let (server, registry, hub) = attached(ProtocolVersion::KNOWN_VERSIONS, "t").await;
    let client = hub.client("t").unwrap();
    assert!(client.is_stateless(), "the server speaks 2026-07-28");
    registry.resolve("t.echo").expect("listed");

    let before = server.posts.lock().len();
    let ctx = ToolContext::detached("call-1");
    for i in 0..10 {
        let v = within("a call", client.call("echo", message(&format!("m{i}")), &ctx))
            .await
            .unwrap();
        assert_eq!(v, json!({ "message": format!("m{i}") }));
    }
    let posts = server.posts.lock().clone();
    assert_eq!(posts.len() - before, 10, "one POST per call, nothing else");
    for h in &posts {
        assert!(!h.contains_key("mcp-session-id"), "no session: {h:?}");
        assert_eq!(h["mcp-protocol-version"], "2026-07-28");
    }
    for h in &posts[before..] {
        assert_eq!(h["mcp-method"], "tools/call");
        assert_eq!(h["mcp-name"], "echo");
        assert_eq!(h["x-aether-call-id"], "call-1");
    }
    assert_eq!(client.stats().sessions_opened, 0);
    assert_eq!(client.stats().calls, 10);
    // discover, the listen request (held open), the list and the calls: two connections.
    assert_eq!(client.stats().connections_opened, 2, "calls reuse one connection");

    // A tool added on the server reaches the registry through `subscriptions/listen`.
    let mut generation = client.tools_generation();
    let v = within("add", client.call("add", Default::default(), &ctx))
        .await
        .unwrap();
    assert_eq!(v, json!({ "added": "added1" }));
    within("the refresh after the change", generation.wait_for(|g| *g >= 2))
        .await
        .unwrap();
    registry.resolve("t.added1").expect("the new tool is registered");

    // An unknown tool is the server's JSON-RPC error, named.
    let e = within("unknown", client.call("nope", Default::default(), &ctx))
        .await
        .unwrap_err();
    assert!(e.0.contains("MCP server `t`") && e.0.contains("nope"), "{e}");
}

const LEGACY: &[ProtocolVersion] = &[ProtocolVersion::V_2025_06_18, ProtocolVersion::V_2025_11_25];

/// The server is replaced by a version without the stateless protocol while the client is
/// attached: the next call is refused as the wrong protocol, the client asks `server/discover`
/// again and sends the call (it did not run) over a session; the caller sees the answer. Later
/// calls use the session without asking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_speaking_the_stateless_protocol_is_asked_again() {
    let handler = Changing::new(ProtocolVersion::KNOWN_VERSIONS);
    let versions = Arc::clone(&handler.versions);
    let (server, _registry, hub) = attached_to(handler, "t").await;
    let client = hub.client("t").unwrap();
    assert!(client.is_stateless());
    let ctx = ToolContext::detached("c");
    let v = within("a call", client.call("echo", message("before"), &ctx))
        .await
        .unwrap();
    assert_eq!(v, json!({ "message": "before" }));

    *versions.lock() = LEGACY;
    for text in ["after", "and again"] {
        let v = within("a call", client.call("echo", message(text), &ctx))
            .await
            .unwrap_or_else(|e| panic!("the call is answered over a session: {e}"));
        assert_eq!(v, json!({ "message": text }));
    }
    assert!(!client.is_stateless(), "the client now uses sessions");
    let stats = client.stats();
    assert_eq!(
        (stats.rediscovered, stats.sessions_opened, stats.failed),
        (1, 1, 0),
        "{stats:?}"
    );
    let posts = server.posts.lock().clone();
    assert!(posts.last().unwrap().contains_key("mcp-session-id"), "over the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_stateless_protocol_gets_a_session() {
    let (server, _registry, hub) = attached(LEGACY, "old").await;
    let client = hub.client("old").unwrap();
    assert!(!client.is_stateless());
    let ctx = ToolContext::detached("c");
    let v = within("a call", client.call("echo", message("hi"), &ctx))
        .await
        .unwrap();
    assert_eq!(v, json!({ "message": "hi" }));
    assert_eq!(client.stats().sessions_opened, 1);
    let posts = server.posts.lock().clone();
    assert!(
        posts.last().unwrap().contains_key("mcp-session-id"),
        "the call went over the session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_clear_error() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = McpServerConfig::http("gone", format!("http://127.0.0.1:{port}/mcp"));
    config.retries = 1;
    config.backoff = Duration::from_millis(1);
    let Err(e) = within("attach", McpHub::attach(Arc::new(ToolRegistry::new()), vec![config])).await else {
        panic!("attached to nothing")
    };
    let e = e.to_string();
    assert!(
        e.contains("`gone`") && e.contains("cannot reach") && e.contains("gave up after 2 attempts"),
        "{e}"
    );
}

/// A tool whose schema marks arguments for SEP-2243 `Mcp-Param-*` headers: rmcp's server refuses
/// a call that does not repeat them (400), so each call must carry them, encoded when needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_arguments_travel_as_mcp_param_headers() {
    let handler = Changing::new(ProtocolVersion::KNOWN_VERSIONS);
    let schema = json!({"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "target": {"type": "object", "properties": {"zone": {"type": "integer", "x-mcp-header": "Zone"}}},
    }});
    let Value::Object(schema) = schema else { unreachable!() };
    handler.tools.lock().push(Tool::new(
        "routed".to_owned(),
        "answers with its arguments".to_owned(),
        Arc::new(schema),
    ));
    let server = serve(handler).await;
    let registry = Arc::new(ToolRegistry::new());
    let hub = within(
        "attach",
        McpHub::attach(Arc::clone(&registry), vec![McpServerConfig::http("r", &server.url)]),
    )
    .await
    .unwrap();
    let client = hub.client("r").unwrap();
    assert!(client.is_stateless());
    let ctx = ToolContext::detached("call-r");
    for (region, encoded) in [("eu-west", "eu-west"), ("zürich", "=?base64?esO8cmljaA==?=")] {
        let Value::Object(args) = json!({"region": region, "target": {"zone": 3}}) else {
            unreachable!()
        };
        let v = within("a routed call", client.call("routed", args, &ctx))
            .await
            .unwrap_or_else(|e| panic!("the server accepted the call's headers: {e}"));
        assert_eq!(v["region"], json!(region));
        let posts = server.posts.lock();
        let h = posts.last().unwrap();
        assert_eq!(h["mcp-param-region"], encoded);
        assert_eq!(h["mcp-param-zone"], "3");
    }
    // Without the argument, no header (and the server agrees).
    let Value::Object(args) = json!({"target": {"zone": 4}}) else {
        unreachable!()
    };
    within("a call without region", client.call("routed", args, &ctx))
        .await
        .unwrap();
    assert!(!server.posts.lock().last().unwrap().contains_key("mcp-param-region"));
}
