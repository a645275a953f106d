//! `--mcp` and `--mcp-config`: MCP servers whose tools join the registry, shared by every
//! subcommand that runs turns.

use std::path::PathBuf;
use std::sync::Arc;

use aether_mcp::{McpHub, McpServerConfig};
use aether_runtime::tools::ToolRegistry;
use clap::Args;

use crate::exit::CliError;

#[derive(Args, Debug, Clone, Default)]
pub struct McpArgs {
    /// An MCP server whose tools register as NAME.tool: NAME=URL for streamable HTTP
    /// (http:// or https://), NAME=COMMAND [ARGS…] for a stdio server started as a child
    /// process (arguments split on spaces). Repeat for several.
    #[arg(long = "mcp", value_name = "NAME=URL|COMMAND")]
    pub specs: Vec<String>,

    /// TOML file of MCP servers: `[[server]]` tables with name, command + args/env/cwd (stdio)
    /// or url + headers (HTTP), and optional timeout_ms (30000), retries (3), backoff_ms (100),
    /// pool_size (1), session ("pooled" or "per_call").
    #[arg(long = "mcp-config", value_name = "FILE", env = "AETHER_MCP_CONFIG")]
    pub file: Option<PathBuf>,
}

impl McpArgs {
    /// Every configured server, the file's first.
    pub fn configs(&self) -> Result<Vec<McpServerConfig>, CliError> {
        let mut out = match &self.file {
            Some(p) => McpServerConfig::load_file(p).map_err(|e| CliError::usage(e.to_string()))?,
            None => Vec::new(),
        };
        for s in &self.specs {
            out.push(McpServerConfig::parse_spec(s).map_err(|e| CliError::usage(e.to_string()))?);
        }
        Ok(out)
    }

    /// Connects the servers and registers their tools; `None` when none is configured.
    pub async fn attach(&self, registry: &Arc<ToolRegistry>) -> Result<Option<McpHub>, CliError> {
        let configs = self.configs()?;
        if configs.is_empty() {
            return Ok(None);
        }
        McpHub::attach(Arc::clone(registry), configs)
            .await
            .map(Some)
            .map_err(|e| CliError::failed(e.to_string()))
    }
}
