//! For tests (this workspace's and a user's): the third-party MCP server they run against,
//! `@modelcontextprotocol/server-everything`, as installed by `scripts/install-mcp-servers.sh`.

use std::path::PathBuf;

use crate::McpServerConfig;

/// Where the installer puts server-everything's entry point: `AETHER_MCP_EVERYTHING`, else the
/// default cache under `$HOME`.
fn server_everything_entry() -> PathBuf {
    std::env::var("AETHER_MCP_EVERYTHING")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            PathBuf::from(home)
                .join(".cache/aether-mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
        })
}

/// server-everything over stdio, or `None` (with the reason on stderr) when it is not installed
/// outside CI. When `CI` is set a missing server panics, so that a test needing it fails rather
/// than passes by skipping (`.ci/run` installs it).
pub fn server_everything() -> Option<McpServerConfig> {
    let entry = server_everything_entry();
    if !entry.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "server-everything missing at {}: run scripts/install-mcp-servers.sh",
            entry.display()
        );
        eprintln!("SKIPPED: server-everything is not installed (run scripts/install-mcp-servers.sh)");
        return None;
    }
    Some(McpServerConfig::stdio(
        "everything",
        "node",
        [entry.to_string_lossy().into_owned(), "stdio".into()],
    ))
}
