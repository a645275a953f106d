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
    /// pool_size (1), session ("pooled" or "per_call"), stateless (true: an HTTP server's
    /// stateless protocol, one POST per call, when it speaks it; false: sessions).
    #[arg(long = "mcp-config", value_name = "FILE", env = "AETHER_MCP_CONFIG")]
    pub file: Option<PathBuf>,

    /// A header for the HTTP MCP server NAME: `NAME=HEADER: VALUE`, e.g.
    /// `--mcp-header 'aether=Authorization: Bearer ${AETHER_MCP_KEY}'`. `${VAR}` is replaced by the
    /// environment variable, so that a key stays out of the command line. Repeat for several.
    #[arg(long = "mcp-header", value_name = "NAME=HEADER: VALUE")]
    pub headers: Vec<String>,
}

/// `NAME=HEADER: VALUE` → (NAME, HEADER, VALUE with `${VAR}` expanded from `env`).
fn parse_header(spec: &str, env: impl Fn(&str) -> Option<String>) -> Result<(String, String, String), CliError> {
    let bad = |why: &str| CliError::usage(format!("--mcp-header `{}`: {why}", redact(spec)));
    let (name, header) = spec.split_once('=').ok_or_else(|| bad("expected NAME=HEADER: VALUE"))?;
    let (header, value) = header
        .split_once(':')
        .ok_or_else(|| bad("expected NAME=HEADER: VALUE (a colon after the header's name)"))?;
    let (name, header) = (name.trim(), header.trim());
    if name.is_empty() || header.is_empty() {
        return Err(bad("the server's name and the header's name must not be empty"));
    }
    let mut out = String::new();
    let mut rest = value.trim();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| bad("`${` without its closing `}`"))?;
        let var = &rest[start + 2..start + end];
        out.push_str(&env(var).ok_or_else(|| bad(&format!("the environment variable `{var}` is not set")))?);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok((name.to_owned(), header.to_owned(), out))
}

/// The spec with the value hidden: it may hold a key.
fn redact(spec: &str) -> String {
    match spec.split_once(':') {
        Some((head, _)) => format!("{head}: …"),
        None => spec.to_owned(),
    }
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
        for spec in &self.headers {
            let (name, header, value) = parse_header(spec, |v| std::env::var(v).ok())?;
            let server = out.iter_mut().find(|c| c.name == name).ok_or_else(|| {
                CliError::usage(format!(
                    "--mcp-header: no MCP server named `{name}` (name it with --mcp {name}=URL or in --mcp-config)"
                ))
            })?;
            if !matches!(server.transport, aether_mcp::McpTransport::Http { .. }) {
                return Err(CliError::usage(format!(
                    "--mcp-header: `{name}` is a stdio server; headers are for HTTP servers"
                )));
            }
            server.headers.insert(header, value);
            server.validate().map_err(|e| CliError::usage(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::parse_header;

    fn env(v: &str) -> Option<String> {
        (v == "KEY").then(|| "s3cret".to_owned())
    }

    #[test]
    fn a_header_spec_names_its_server_and_reads_the_environment() {
        assert_eq!(
            parse_header("web=Authorization: Bearer ${KEY}", env).unwrap(),
            ("web".into(), "Authorization".into(), "Bearer s3cret".into())
        );
        assert_eq!(parse_header("web=X-Team: a:b", env).unwrap().2, "a:b");
        for (bad, why) in [
            ("web", "expected NAME=HEADER: VALUE"),
            ("web=Authorization Bearer x", "a colon"),
            ("=X: y", "must not be empty"),
            ("web=Authorization: Bearer ${NOPE}", "`NOPE` is not set"),
            ("web=Authorization: Bearer ${KEY", "closing"),
        ] {
            let e = parse_header(bad, env).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = parse_header("web=Authorization: Bearer ${NOPE} s3cret-literal", env)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret-literal"), "the value is never echoed: {e}");
    }
}
