//! Model Context Protocol for Aether Frame, on the `rmcp` SDK.
//!
//! * [`config`]: how a server is configured (TOML `[[server]]` tables or `name=URL|COMMAND`).
//! * [`client`]: one server's connection: a direct client of the stateless protocol (one POST
//!   per call) for HTTP servers that speak it, else pooled sessions (or one per call, to measure
//!   the difference) restarted with backoff after a crash; per-request headers, progress and
//!   cancellation either way.
//! * [`hub`]: puts every configured server's tools in a runtime's registry as `server.tool`,
//!   and refreshes them when a server says its tool list changed.
//! * [`server`]: the other direction: a registry's tools served over stdio or streamable HTTP
//!   ([`McpHttpService`]: a plain stateless `tools/call` answered in line, the rest by rmcp).

pub mod client;
pub mod config;
mod direct;
mod http_client;
pub mod hub;
pub mod server;
mod server_http;
mod server_span;
pub mod testing;
mod tool;

pub use client::{CallOutcome, McpClient, McpStatsSnapshot};
pub use config::{McpServerConfig, McpTransport, SessionMode};
pub use http_client::ensure_tls_provider;
pub use hub::McpHub;
pub use server::{serve_stdio, ServerStats, ToolServer};
pub use server_http::{serve_http, streamable_http_service, Authorize, McpHttpService, McpResponse, MAX_INLINE_BODY};

/// Request `_meta` keys (and, over HTTP, `x-aether-*` headers) that tell a server who a call is for.
pub const META_TASK_ID: &str = "aether/task_id";
pub const META_SESSION_ID: &str = "aether/session_id";
pub const META_CALL_ID: &str = "aether/call_id";
pub const META_USER_ID: &str = "aether/user_id";
/// Result `_meta` key in which `aether mcp-serve` reports the tool's own run time (µs).
pub const META_EXECUTION_US: &str = "aether/execution_us";

/// What can go wrong outside a single call.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// A configuration field is wrong; the message names it.
    #[error("MCP configuration: {0}")]
    Config(String),
    /// A server could not be started or did not complete the handshake.
    #[error("MCP server `{server}`: {reason}")]
    Connect { server: String, reason: String },
    /// A server's tool list could not be read or registered.
    #[error("MCP server `{server}`: {reason}")]
    Tools { server: String, reason: String },
    #[error("MCP server: {0}")]
    Serve(String),
}
