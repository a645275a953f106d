//! `aether mcp-serve`: the registry's tools (built-in and demo) as an MCP server, on stdio
//! (the default; logs go to stderr) or streamable HTTP (`--http ADDR`, endpoint `/mcp`), which
//! needs a bearer API key of the tenants' configuration unless `--allow-anonymous` on loopback.

use std::net::SocketAddr;

use aether_mcp::{serve_http, serve_stdio, ToolServer};
use aether_runtime::{Runtime, RuntimeConfig};
use clap::Args;

use crate::exit::CliError;
use crate::sim_args::comma_list;

#[derive(Args)]
pub struct McpServeArgs {
    /// Serve streamable HTTP on this address (port 0: any free port; the URL is printed on
    /// stdout) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,

    /// Only these tools (comma list of full names or namespaces, e.g. `builtin,demo.fx_quote`).
    #[arg(long, value_name = "LIST")]
    tools: Option<String>,

    /// Tools per `tools/list` page.
    #[arg(long, default_value_t = 50, value_name = "N")]
    page_size: usize,

    /// Latency of every demo tool in milliseconds (default 100; 0 for none).
    #[arg(long, value_name = "N")]
    tool_latency_ms: Option<u64>,

    /// Also accept this `Host` header over HTTP (loopback names are always accepted; a guard
    /// against DNS rebinding). Repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,

    /// Over HTTP, the API keys that may call the tools: the same tenants configuration as
    /// `aether serve` (TOML `[[tenants]]` with SHA-256 hashes of the keys; also the keys in
    /// `AETHER_API_KEYS=key=tenant,...`). Clients send `Authorization: Bearer KEY`
    /// (`--mcp-header NAME=Authorization: Bearer ${VAR}` on the client side).
    #[arg(long, value_name = "FILE", env = "AETHER_SERVE_CONFIG")]
    config: Option<std::path::PathBuf>,

    /// Development only: serve HTTP without API keys. Refused unless the address is a loopback
    /// one.
    #[arg(long)]
    allow_anonymous: bool,
}

/// Who may call the tools over HTTP at `addr`: a key of the tenants' configuration, or anyone
/// with `--allow-anonymous` on a loopback address. Bad input (no keys, anonymous on a public
/// address) is an error at start.
fn http_authorization(a: &McpServeArgs, addr: SocketAddr) -> Result<aether_mcp::Authorize, CliError> {
    if a.allow_anonymous && !addr.ip().is_loopback() {
        return Err(CliError::usage(format!(
            "--allow-anonymous is refused on {addr}: without keys anyone who can reach it may call the tools; \
             bind a loopback address (127.0.0.1) or configure API keys"
        )));
    }
    let cfg = crate::serve::tenant_config(a.config.as_deref(), a.allow_anonymous)?;
    if cfg.tenants.is_empty() && !cfg.allow_anonymous {
        return Err(CliError::usage(
            "mcp-serve --http needs API keys: [[tenants]] in --config FILE, or AETHER_API_KEYS=key=tenant \
             (or --allow-anonymous on a loopback address, for development)",
        ));
    }
    cfg.validate().map_err(|e| CliError::usage(e.to_string()))?;
    if cfg.allow_anonymous {
        tracing::warn!("--allow-anonymous: MCP requests without an API key are served");
    }
    let tenants = aether_server::tenants::Tenants::new(&cfg, None);
    Ok(std::sync::Arc::new(move |authorization| tenants.accepts(authorization)))
}

pub async fn run(a: McpServeArgs) -> Result<(), CliError> {
    if a.page_size == 0 {
        return Err(CliError::usage("--page-size must be at least 1"));
    }
    let mut demo = aether_runtime::tools::demo::DemoToolConfig::default();
    if let Some(ms) = a.tool_latency_ms {
        demo.latency = std::time::Duration::from_millis(ms);
    }
    let rt = Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            ..Default::default()
        })
        .demo_tools(demo)
        .build()
        .map_err(|e| CliError::failed(e.to_string()))?;
    let mut tools = rt.tools().list();
    if let Some(list) = &a.tools {
        // A full name, or a namespace and everything in it.
        let selects = |w: &str, name: &str| name == w || name.strip_prefix(w).is_some_and(|r| r.starts_with('.'));
        let wanted = comma_list(list);
        if let Some(unknown) = wanted.iter().find(|w| !tools.iter().any(|t| selects(w, &t.full_name))) {
            return Err(CliError::usage(format!(
                "--tools: `{unknown}` names no tool or namespace (see `aether tools`)"
            )));
        }
        tools.retain(|t| wanted.iter().any(|w| selects(w, &t.full_name)));
    }
    let server = ToolServer::new(tools, a.page_size);
    match a.http {
        None => serve_stdio(server).await.map_err(|e| CliError::failed(e.to_string())),
        Some(addr) => {
            let authorize = http_authorization(&a, addr)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| CliError::failed(format!("cannot listen on {addr}: {e}")))?;
            let local = listener.local_addr().map_err(|e| CliError::failed(e.to_string()))?;
            println!("aether mcp-serve: MCP over streamable HTTP at http://{local}/mcp");
            tracing::info!(%local, "MCP server listening");
            // Ctrl-C or SIGTERM: open requests finish, then spans are flushed on the way out.
            let stop = crate::serve::shutdown_signal();
            serve_http(listener, server, &a.allow_hosts, Some(authorize), stop)
                .await
                .map_err(|e| CliError::failed(e.to_string()))
        }
    }
}
