//! How MCP servers are configured: one [`McpServerConfig`] per server, from a TOML file
//! (`[[server]]` tables) or a one-line spec (`name=URL` or `name=COMMAND ARGS…`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::McpError;

/// How to reach a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP endpoint (`http://` or `https://`).
    Http { url: String },
}

/// Whether calls share sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// Calls share `pool_size` long-lived sessions (the default).
    #[default]
    Pooled,
    /// Every call opens a session, handshakes, calls and closes: the original's design, kept to
    /// measure what pooling saves.
    PerCall,
}

/// One MCP server.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServerConfig {
    /// The tool namespace: its tools register as `name.tool`.
    pub name: String,
    pub transport: McpTransport,
    /// Headers sent with every HTTP request (e.g. `Authorization`).
    pub headers: BTreeMap<String, String>,
    /// Per-call timeout; a call past it fails and the server is told to cancel it.
    pub timeout: Duration,
    /// Attempts after the first to connect (spawn or handshake) before a call fails.
    pub retries: u32,
    /// Wait before the first retry; it doubles each time, up to 30 s.
    pub backoff: Duration,
    /// Sessions kept open (stdio: processes). Calls are spread over them.
    pub pool_size: usize,
    pub session: SessionMode,
    /// HTTP: use the server's stateless protocol (MCP 2026-07-28: one POST per call, no
    /// session) when it speaks it (the default); `false` keeps sessions, as for older servers.
    pub stateless: bool,
}

/// Default per-call timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl McpServerConfig {
    /// A stdio server with the defaults.
    pub fn stdio(
        name: impl Into<String>,
        command: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::with_transport(
            name,
            McpTransport::Stdio {
                command: command.into(),
                args: args.into_iter().map(Into::into).collect(),
                env: BTreeMap::new(),
                cwd: None,
            },
        )
    }

    /// A streamable-HTTP server with the defaults.
    pub fn http(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self::with_transport(name, McpTransport::Http { url: url.into() })
    }

    fn with_transport(name: impl Into<String>, transport: McpTransport) -> Self {
        Self {
            name: name.into(),
            transport,
            headers: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            retries: 3,
            backoff: Duration::from_millis(100),
            pool_size: 1,
            session: SessionMode::Pooled,
            stateless: true,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_session(mut self, session: SessionMode) -> Self {
        self.session = session;
        self
    }

    /// Whether an HTTP server's stateless protocol is used when it speaks it (see `stateless`).
    pub fn with_stateless(mut self, stateless: bool) -> Self {
        self.stateless = stateless;
        self
    }

    /// Parses `name=URL` (http or https) or `name=COMMAND ARG…` (split on whitespace).
    pub fn parse_spec(spec: &str) -> Result<Self, McpError> {
        let bad = |reason: &str| McpError::Config(format!("--mcp `{spec}`: {reason}"));
        let (name, target) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=URL or NAME=COMMAND [ARGS…]"))?;
        let target = target.trim();
        let config = if target.starts_with("http://") || target.starts_with("https://") {
            Self::http(name.trim(), target)
        } else {
            let mut words = target.split_whitespace();
            let command = words.next().ok_or_else(|| bad("the command is empty"))?;
            Self::stdio(name.trim(), command, words)
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads every `[[server]]` of a TOML file.
    pub fn load_file(path: &Path) -> Result<Vec<Self>, McpError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| McpError::Config(format!("cannot read MCP config `{}`: {e}", path.display())))?;
        Self::parse_toml(&text).map_err(|e| McpError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses the TOML of an MCP config file.
    pub fn parse_toml(text: &str) -> Result<Vec<Self>, McpError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| McpError::Config(e.to_string()))?;
        let mut out: Vec<Self> = Vec::with_capacity(file.server.len());
        for (i, s) in file.server.into_iter().enumerate() {
            let at = |field: &str, reason: &str| McpError::Config(format!("server[{i}].{field}: {reason}"));
            let transport = match (s.command, s.url) {
                (Some(_), None) if s.stateless.is_some() => {
                    return Err(at(
                        "stateless",
                        "applies to HTTP servers (`url`): stdio servers keep a session",
                    ))
                }
                (Some(command), None) => McpTransport::Stdio {
                    command,
                    args: s.args,
                    env: s.env,
                    cwd: s.cwd,
                },
                (None, Some(url)) => {
                    if !s.args.is_empty() || !s.env.is_empty() || s.cwd.is_some() {
                        return Err(at("args", "args, env and cwd belong to stdio servers (`command`)"));
                    }
                    McpTransport::Http { url }
                }
                (Some(_), Some(_)) => return Err(at("url", "set either `command` (stdio) or `url` (HTTP), not both")),
                (None, None) => return Err(at("command", "set `command` (stdio) or `url` (HTTP)")),
            };
            let mut c = Self::with_transport(s.name, transport);
            c.headers = s.headers;
            if let Some(ms) = s.timeout_ms {
                c.timeout = Duration::from_millis(ms);
            }
            if let Some(r) = s.retries {
                c.retries = r;
            }
            if let Some(ms) = s.backoff_ms {
                c.backoff = Duration::from_millis(ms);
            }
            if let Some(n) = s.pool_size {
                c.pool_size = n;
            }
            c.session = s.session;
            if let Some(stateless) = s.stateless {
                c.stateless = stateless;
            }
            c.validate()
                .map_err(|e| McpError::Config(format!("server[{i}]: {e}")))?;
            if out.iter().any(|o| o.name == c.name) {
                return Err(at("name", &format!("`{}` is configured twice", c.name)));
            }
            out.push(c);
        }
        Ok(out)
    }

    /// Checks the fields a file or a spec cannot type-check.
    pub fn validate(&self) -> Result<(), McpError> {
        let bad = |field: &str, reason: String| McpError::Config(format!("{field}: {reason}"));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(
                "name",
                format!(
                    "`{}` must be non-empty and use only letters, digits, `_` and `-` (it is the tool namespace)",
                    self.name
                ),
            ));
        }
        if matches!(self.name.as_str(), "builtin" | "demo") {
            return Err(bad(
                "name",
                format!("`{}` is the namespace of Aether's own tools", self.name),
            ));
        }
        match &self.transport {
            McpTransport::Stdio { command, .. } if command.trim().is_empty() => {
                return Err(bad("command", "must not be empty".into()))
            }
            McpTransport::Http { url } if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(bad("url", format!("`{url}` must start with http:// or https://")))
            }
            _ => {}
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout_ms", "must be above 0".into()));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(bad("pool_size", format!("{} is outside 1..=64", self.pool_size)));
        }
        for (k, v) in &self.headers {
            http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad("headers", format!("`{k}`: {e}")))?;
            http::HeaderValue::from_str(v).map_err(|e| bad("headers", format!("value of `{k}`: {e}")))?;
        }
        Ok(())
    }

    /// The wait before connection attempt `attempt` (1 = first retry).
    pub fn backoff_for(&self, attempt: u32) -> Duration {
        self.backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(MAX_BACKOFF)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: Vec<ServerEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerEntry {
    name: String,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    retries: Option<u32>,
    backoff_ms: Option<u64>,
    pool_size: Option<usize>,
    #[serde(default)]
    session: SessionMode,
    stateless: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_files_parse_and_bad_ones_say_which_field() {
        let c = McpServerConfig::parse_spec("everything=node server.js stdio").unwrap();
        assert_eq!(
            c.transport,
            McpTransport::Stdio {
                command: "node".into(),
                args: vec!["server.js".into(), "stdio".into()],
                env: BTreeMap::new(),
                cwd: None
            }
        );
        let c = McpServerConfig::parse_spec("remote=http://127.0.0.1:9/mcp").unwrap();
        assert_eq!(
            c.transport,
            McpTransport::Http {
                url: "http://127.0.0.1:9/mcp".into()
            }
        );
        assert!(McpServerConfig::parse_spec("nothing")
            .unwrap_err()
            .to_string()
            .contains("NAME=URL"));
        assert!(McpServerConfig::parse_spec("demo=x")
            .unwrap_err()
            .to_string()
            .contains("Aether's own"));
        assert!(McpServerConfig::parse_spec("a.b=x")
            .unwrap_err()
            .to_string()
            .contains("name"));

        let file = r#"
            [[server]]
            name = "fs"
            command = "node"
            args = ["a.js"]
            timeout_ms = 500
            session = "per_call"
            [[server]]
            name = "web"
            url = "https://example.invalid/mcp"
            headers = { Authorization = "Bearer x" }
            pool_size = 4
            stateless = false
        "#;
        let v = McpServerConfig::parse_toml(file).unwrap();
        assert_eq!(v[0].timeout, Duration::from_millis(500));
        assert_eq!(v[0].session, SessionMode::PerCall);
        assert_eq!(v[1].pool_size, 4);
        assert!(v[0].stateless && !v[1].stateless);
        let e =
            McpServerConfig::parse_toml("[[server]]\nname = \"x\"\ncommand = \"a\"\nstateless = true\n").unwrap_err();
        assert!(e.to_string().contains("server[0].stateless"), "{e}");
        let e = McpServerConfig::parse_toml("[[server]]\nname = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("server[0].command"), "{e}");
        let e = McpServerConfig::parse_toml("[[server]]\nname = \"x\"\nurl = \"ftp://a\"\n").unwrap_err();
        assert!(e.to_string().contains("url"), "{e}");
        let e = McpServerConfig::parse_toml("[[server]]\nname = \"x\"\ncommand = \"a\"\npool_size = 0\n").unwrap_err();
        assert!(e.to_string().contains("pool_size"), "{e}");
        let e = McpServerConfig::parse_toml("[[server]]\nname = \"x\"\ncommand = \"a\"\ntimeout = 3\n").unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = McpServerConfig::stdio("s", "x", Vec::<String>::new());
        assert_eq!(c.backoff_for(1), Duration::from_millis(100));
        assert_eq!(c.backoff_for(3), Duration::from_millis(400));
        assert_eq!(c.backoff_for(40), MAX_BACKOFF);
    }
}
