//! The tool registry, keyed by `namespace.name`, and the resolver rules of the original:
//! exact full name → unique short-name suffix → error with suggestions.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::RegisteredTool;

/// Registration failures.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("tool `{0}` is already registered")]
    Duplicate(String),
    #[error("invalid tool name `{name}`: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid parameters_schema for tool `{name}`: {reason}")]
    InvalidSchema { name: String, reason: String },
}

/// A name that resolves to no tool, or to several.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown tool `{name}`{}", suggest(suggestions))]
    NotFound { name: String, suggestions: Vec<String> },
    #[error("tool name `{name}` is ambiguous; use the full name, one of: {}", candidates.join(", "))]
    Ambiguous { name: String, candidates: Vec<String> },
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(
            "; did you mean {}?",
            s.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        )
    }
}

/// Resolves `name` among `tools` by the resolver rules:
/// 1. a tool whose full name is `name`;
/// 2. when `name` has no namespace, the one tool whose short name is `name` (several: ambiguous);
/// 3. otherwise not found, with up to three similar names as suggestions.
pub fn resolve_among<'a, I>(tools: I, name: &str) -> Result<&'a Arc<RegisteredTool>, ResolveError>
where
    I: IntoIterator<Item = &'a Arc<RegisteredTool>>,
    I::IntoIter: Clone,
{
    let tools = tools.into_iter();
    if let Some(t) = tools.clone().find(|t| &*t.full_name == name) {
        return Ok(t);
    }
    if !name.contains('.') {
        let mut matches = tools.clone().filter(|t| &*t.short_name == name);
        if let Some(first) = matches.next() {
            let rest: Vec<_> = matches.collect();
            if rest.is_empty() {
                return Ok(first);
            }
            let mut candidates: Vec<String> = std::iter::once(first)
                .chain(rest)
                .map(|t| t.full_name.to_string())
                .collect();
            candidates.sort();
            return Err(ResolveError::Ambiguous {
                name: name.to_owned(),
                candidates,
            });
        }
    }
    let mut scored: Vec<(f64, &str)> = tools
        .map(|t| {
            let full = strsim::jaro_winkler(name, &t.full_name);
            let short = strsim::jaro_winkler(name.rsplit('.').next().unwrap_or(name), &t.short_name);
            (full.max(short), &*t.full_name)
        })
        .filter(|(s, _)| *s >= 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    Err(ResolveError::NotFound {
        name: name.to_owned(),
        suggestions: scored.into_iter().take(3).map(|(_, n)| n.to_owned()).collect(),
    })
}

/// All tools known to a runtime. Read at agent creation, not per turn.
#[derive(Default)]
pub struct ToolRegistry {
    tools: RwLock<HashMap<Arc<str>, Arc<RegisteredTool>>>,
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, tool: RegisteredTool) -> Result<Arc<RegisteredTool>, RegistryError> {
        let mut tools = self.tools.write();
        if tools.contains_key(&tool.full_name) {
            return Err(RegistryError::Duplicate(tool.full_name.to_string()));
        }
        let tool = Arc::new(tool);
        tools.insert(Arc::clone(&tool.full_name), Arc::clone(&tool));
        Ok(tool)
    }

    /// Replaces every tool of `namespace` with `tools` in one step (an MCP server's tool list
    /// changed). Agents created before keep the tools they resolved; new agents see the new
    /// list. Fails, changing nothing, when a new tool is outside `namespace` or named twice.
    pub fn replace_namespace(&self, namespace: &str, tools: Vec<RegisteredTool>) -> Result<usize, RegistryError> {
        let mut fresh: HashMap<Arc<str>, Arc<RegisteredTool>> = HashMap::with_capacity(tools.len());
        for t in tools {
            if t.spec.namespace.as_deref() != Some(namespace) {
                return Err(RegistryError::InvalidName {
                    name: t.full_name.to_string(),
                    reason: format!("expected a tool of namespace `{namespace}`"),
                });
            }
            if fresh.contains_key(&t.full_name) {
                return Err(RegistryError::Duplicate(t.full_name.to_string()));
            }
            fresh.insert(Arc::clone(&t.full_name), Arc::new(t));
        }
        let n = fresh.len();
        let mut all = self.tools.write();
        all.retain(|_, t| t.spec.namespace.as_deref() != Some(namespace));
        all.extend(fresh);
        Ok(n)
    }

    /// Resolves a name by the resolver rules.
    pub fn resolve(&self, name: &str) -> Result<Arc<RegisteredTool>, ResolveError> {
        let tools = self.tools.read();
        if let Some(t) = tools.get(name) {
            return Ok(Arc::clone(t));
        }
        let all: Vec<&Arc<RegisteredTool>> = tools.values().collect();
        resolve_among(all.iter().copied(), name).map(Arc::clone)
    }

    /// Every tool, sorted by full name.
    pub fn list(&self) -> Vec<Arc<RegisteredTool>> {
        let mut v: Vec<_> = self.tools.read().values().cloned().collect();
        v.sort_by(|a, b| a.full_name.cmp(&b.full_name));
        v
    }

    pub fn len(&self) -> usize {
        self.tools.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
