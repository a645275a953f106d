//! Server settings: a TOML file (`aether serve --config FILE`), flags on top, and API keys from the
//! environment (`AETHER_API_KEYS=key1=tenant1,key2=tenant2`, for development; admin keys in
//! `AETHER_ADMIN_KEYS=key1,key2`).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Everything `aether serve` needs beyond the runtime.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub limits: Limits,
    /// Applies to every tenant that does not set its own `rate_limit`. None: unlimited.
    pub rate_limit: Option<RateLimit>,
    pub tenants: Vec<TenantConfig>,
    /// Development only: no API key needed; every request belongs to tenant `default`.
    pub allow_anonymous: bool,
    /// Operators' keys: they read the whole server's figures (all tenants), e.g. the stats route
    /// `aether perf --target` reads at each interval.
    pub admin: AdminConfig,
}

/// `[admin]`: the SHA-256 (hex) of each operator key. An admin key is not a tenant key: it reads
/// `/v1/admin/*` and nothing else.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub api_key_sha256: Vec<String>,
}

/// Admission, sizes and deadlines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body; larger gets 413.
    pub max_body_bytes: usize,
    /// A turn that takes longer gets 504 with a TaskResult error body.
    pub request_timeout_s: f64,
    /// Turns running at once on this instance.
    pub max_in_flight: usize,
    /// Turns that may wait for a slot; when full, 503 with Retry-After.
    pub admission_queue: usize,
    /// Live (streamed) turns open at once; beyond, 503.
    pub max_live_sessions: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_timeout_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            request_timeout_s: 300.0,
            max_in_flight: 4096,
            admission_queue: 16_384,
            max_live_sessions: 10_000,
            drain_timeout_s: 30.0,
        }
    }
}

impl Limits {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_s)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout_s)
    }
}

/// Per-tenant request rates. Above `soft_rps` requests still pass, marked with the
/// `x-ratelimit-soft` header and counted; above `hard_rps` they get 429 with Retry-After.
/// Both are token buckets: the hard one holds `burst` requests, the soft one
/// `burst × soft_rps / hard_rps` (at least one).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub soft_rps: f64,
    pub hard_rps: f64,
    pub burst: f64,
}

/// One tenant and the SHA-256 (hex) of each of its API keys. Keys are never stored in clear.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    #[serde(default)]
    pub api_key_sha256: Vec<String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// A setting that cannot be used, naming what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ServerConfig {
    /// Reads a TOML file; errors name the file and the field.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config `{}`: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ConfigError(format!("config `{}`: {e}", path.display())))
    }

    /// Adds the tenants of `AETHER_API_KEYS` (`key=tenant,...`).
    pub fn add_env_keys(&mut self, spec: &str) -> Result<(), ConfigError> {
        for (i, pair) in spec.split(',').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
            let Some((key, tenant)) = pair.split_once('=') else {
                return Err(ConfigError(format!(
                    "AETHER_API_KEYS entry {} must be KEY=TENANT (the key itself is not shown)",
                    i + 1
                )));
            };
            let hash = key_hash(key.trim());
            match self.tenants.iter_mut().find(|t| t.name == tenant.trim()) {
                Some(t) => t.api_key_sha256.push(hash),
                None => self.tenants.push(TenantConfig {
                    name: tenant.trim().to_owned(),
                    api_key_sha256: vec![hash],
                    rate_limit: None,
                }),
            }
        }
        Ok(())
    }

    /// Adds the admin keys of `AETHER_ADMIN_KEYS` (`key1,key2`).
    pub fn add_env_admin_keys(&mut self, spec: &str) {
        for key in spec.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            self.admin.api_key_sha256.push(key_hash(key));
        }
    }

    /// Checks names, hashes and limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (j, h) in self.admin.api_key_sha256.iter().enumerate() {
            if digest_from_hex(h).is_none() {
                return Err(ConfigError(format!(
                    "admin.api_key_sha256[{j}]: expected 64 hex digits (sha256sum of the key)"
                )));
            }
        }
        for (i, t) in self.tenants.iter().enumerate() {
            if !valid_tenant_name(&t.name) {
                return Err(ConfigError(format!(
                    "tenants[{i}].name `{}`: expected 1-64 characters of A-Z a-z 0-9 _ . -",
                    t.name
                )));
            }
            for (j, h) in t.api_key_sha256.iter().enumerate() {
                if digest_from_hex(h).is_none() {
                    return Err(ConfigError(format!(
                        "tenants[{i}].api_key_sha256[{j}]: expected 64 hex digits (sha256sum of the key)"
                    )));
                }
            }
            if let Some(r) = t.rate_limit {
                check_rate(&r, &format!("tenants[{i}].rate_limit"))?;
            }
        }
        if let Some(r) = self.rate_limit {
            check_rate(&r, "rate_limit")?;
        }
        let l = &self.limits;
        if l.max_in_flight == 0 || l.max_body_bytes == 0 || l.max_live_sessions == 0 {
            return Err(ConfigError(
                "limits.max_in_flight, limits.max_body_bytes and limits.max_live_sessions must be at least 1".into(),
            ));
        }
        if !(l.request_timeout_s.is_finite() && l.request_timeout_s > 0.0) {
            return Err(ConfigError(
                "limits.request_timeout_s must be a positive number of seconds".into(),
            ));
        }
        if !(l.drain_timeout_s.is_finite() && l.drain_timeout_s >= 0.0) {
            return Err(ConfigError(
                "limits.drain_timeout_s must be zero or more seconds".into(),
            ));
        }
        if self.tenants.is_empty() && !self.allow_anonymous {
            return Err(ConfigError(
                "no API keys: set AETHER_API_KEYS=key=tenant, add [[tenants]] to the config file, \
                 or pass --allow-anonymous (development only)"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn check_rate(r: &RateLimit, at: &str) -> Result<(), ConfigError> {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    if !(ok(r.soft_rps) && ok(r.hard_rps) && ok(r.burst)) || r.soft_rps > r.hard_rps {
        return Err(ConfigError(format!(
            "{at}: soft_rps, hard_rps and burst must be positive, with soft_rps <= hard_rps"
        )));
    }
    Ok(())
}

/// Tenant names become id prefixes, so they are restricted.
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// SHA-256 of an API key, lowercase hex: what the config file stores.
pub fn key_hash(key: &str) -> String {
    key_digest(key).iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of an API key: what a request's key is looked up by (no text per request).
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The digest written as 64 hex digits (validated by [`ServerConfig::validate`]).
pub fn digest_from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
