//! `aether mcp-serve`: the registry's tools (built-in and demo) as an MCP server, on stdio
//! (the default; logs go to stderr) or streamable HTTP (`--http ADDR`, endpoint `/mcp`).

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
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| CliError::failed(format!("cannot listen on {addr}: {e}")))?;
            let local = listener.local_addr().map_err(|e| CliError::failed(e.to_string()))?;
            println!("aether mcp-serve: MCP over streamable HTTP at http://{local}/mcp");
            tracing::info!(%local, "MCP server listening");
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            serve_http(listener, server, &a.allow_hosts, stop)
                .await
                .map_err(|e| CliError::failed(e.to_string()))
        }
    }
}
