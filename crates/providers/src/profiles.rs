//! Latency and price profiles of the simulated model, loaded from TOML.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::tokens::Tokenizer;

/// The profiles shipped with the project.
pub const BUILTIN_PROFILES: &str = include_str!("../assets/sim-profiles.toml");

/// How one model behaves in simulation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub ttft_ms: f64,
    pub per_token_ms: f64,
    #[serde(default)]
    pub jitter_ms: f64,
    pub output_tokens: u32,
    #[serde(default)]
    pub prompt_price_per_1k: f64,
    #[serde(default)]
    pub completion_price_per_1k: f64,
    #[serde(default)]
    pub tokenizer: Tokenizer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    default: Option<Profile>,
    #[serde(default)]
    models: HashMap<String, Profile>,
}

/// Profiles by model name, plus the default.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    default: Arc<Profile>,
    models: HashMap<String, Arc<Profile>>,
}

/// A profile file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read simulated-model profiles `{path}`: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid simulated-model profiles in `{origin}`: {message}")]
    Parse { origin: String, message: String },
}

impl ProfileSet {
    /// The shipped profiles.
    pub fn builtin() -> Self {
        Self::from_toml(BUILTIN_PROFILES, "built-in sim-profiles.toml", None)
            .unwrap_or_else(|e| unreachable!("shipped profiles are valid: {e}"))
    }

    /// The shipped profiles with the tables of `path` laid over them.
    pub fn builtin_with_overrides(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string(), Some(Self::builtin()))
    }

    fn from_toml(text: &str, origin: &str, base: Option<Self>) -> Result<Self, ProfileError> {
        let file: ProfileFile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let mut set = match (base, file.default) {
            (Some(mut b), Some(d)) => {
                b.default = Arc::new(d);
                b
            }
            (Some(b), None) => b,
            (None, Some(d)) => Self {
                default: Arc::new(d),
                models: HashMap::new(),
            },
            (None, None) => {
                return Err(ProfileError::Parse {
                    origin: origin.to_owned(),
                    message: "missing [default] table".into(),
                })
            }
        };
        for (name, p) in file.models {
            if p.ttft_ms < 0.0 || p.per_token_ms < 0.0 || p.jitter_ms < 0.0 {
                return Err(ProfileError::Parse {
                    origin: origin.to_owned(),
                    message: format!("models.\"{name}\": latencies must not be negative"),
                });
            }
            set.models.insert(name, Arc::new(p));
        }
        Ok(set)
    }

    /// The profile for `model`: exact name, else the longest name it starts with, else default.
    /// Returns the matched name (`default` for the fallback).
    pub fn lookup<'a>(&'a self, model: &str) -> (&'a str, &'a Arc<Profile>) {
        if let Some((k, p)) = self.models.get_key_value(model) {
            return (k, p);
        }
        self.models
            .iter()
            .filter(|(k, _)| model.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(k, p)| (k.as_str(), p))
            .unwrap_or(("default", &self.default))
    }

    /// Names of the profiled models, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.models.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    pub fn default_profile(&self) -> &Arc<Profile> {
        &self.default
    }
}
