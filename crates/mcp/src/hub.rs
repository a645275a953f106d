//! Every configured MCP server's tools in a runtime's registry, kept current: a server's
//! `tools/list_changed` notification re-reads its list and replaces its namespace in one step.

use std::sync::Arc;

use aether_tools::ToolRegistry;
use tokio::task::JoinHandle;

use crate::client::McpClient;
use crate::config::McpServerConfig;
use crate::tool::registry_tools;
use crate::McpError;

/// The MCP servers attached to one registry. Dropping it stops the refreshes; call
/// [`McpHub::shutdown`] to close the sessions too.
pub struct McpHub {
    clients: Vec<McpClient>,
    refreshers: Vec<JoinHandle<()>>,
}

impl McpHub {
    /// Connects to every server, registers its tools as `server.tool`, and watches for changes.
    /// Fails, naming the server, when one cannot be reached or its tools cannot be registered.
    pub async fn attach(registry: Arc<ToolRegistry>, configs: Vec<McpServerConfig>) -> Result<Self, McpError> {
        let mut hub = Self {
            clients: Vec::with_capacity(configs.len()),
            refreshers: Vec::new(),
        };
        for config in configs {
            if hub.clients.iter().any(|c| c.name() == config.name) {
                return Err(McpError::Config(format!(
                    "server `{}` is configured twice",
                    config.name
                )));
            }
            if registry
                .list()
                .iter()
                .any(|t| t.spec.namespace.as_deref() == Some(config.name.as_str()))
            {
                return Err(McpError::Config(format!(
                    "server name `{}` is already a tool namespace in the registry",
                    config.name
                )));
            }
            let client = McpClient::new(config)?;
            client.connect().await?;
            refresh(&registry, &client).await?;
            let (r, c) = (Arc::clone(&registry), client.clone());
            hub.refreshers.push(tokio::spawn(async move {
                loop {
                    c.tools_changed().await;
                    if let Err(e) = refresh(&r, &c).await {
                        tracing::warn!(server = c.name(), error = %e, "MCP tool list refresh failed; keeping the old list");
                    }
                }
            }));
            hub.clients.push(client);
        }
        Ok(hub)
    }

    pub fn clients(&self) -> &[McpClient] {
        &self.clients
    }

    pub fn client(&self, name: &str) -> Option<&McpClient> {
        self.clients.iter().find(|c| c.name() == name)
    }

    /// Stops the refreshes and closes every session.
    pub async fn shutdown(&mut self) {
        for r in self.refreshers.drain(..) {
            r.abort();
        }
        for c in &self.clients {
            c.shutdown().await;
        }
    }
}

impl Drop for McpHub {
    fn drop(&mut self) {
        for r in &self.refreshers {
            r.abort();
        }
    }
}

/// Reads the server's tools and replaces its namespace with them.
async fn refresh(registry: &ToolRegistry, client: &McpClient) -> Result<usize, McpError> {
    let tools = client.list_tools().await?;
    let tools = registry_tools(client, tools)?;
    let n = registry
        .replace_namespace(client.name(), tools)
        .map_err(|e| McpError::Tools {
            server: client.name().to_owned(),
            reason: e.to_string(),
        })?;
    client.tools_refreshed();
    tracing::info!(server = client.name(), tools = n, "MCP tools registered");
    Ok(n)
}
