//! API keys to tenants, and the tenant's id space. Every agent and session a request touches is
//! looked up inside its tenant: session ids are stored as `TENANT:ID`, agents carry their tenant in
//! `framework_config.tenant` (set by the server, never by the client). A leaf: the
//! authentication middleware (`auth`) and the shared state both build on it.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use subtle::{Choice, ConstantTimeEq};

use crate::config::{digest_from_hex, key_digest, ServerConfig};
use crate::error::ApiError;
use crate::limits::RateLimiter;

/// The key of `framework_config` that names an agent's tenant.
pub const TENANT_KEY: &str = "tenant";

/// A tenant, as the request's extension after authentication.
#[derive(Debug)]
pub struct Tenant {
    pub name: Arc<str>,
    prefix: String,
    pub(crate) limiter: Option<RateLimiter>,
}

impl Tenant {
    fn new(name: &str, limiter: Option<RateLimiter>) -> Self {
        Self {
            name: name.into(),
            prefix: format!("{name}:"),
            limiter,
        }
    }

    /// The stored id of the tenant's session `id`.
    pub fn scoped(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The tenant's own id of a stored session id; `None` for another tenant's.
    pub fn unscoped<'a>(&self, stored: &'a str) -> Option<&'a str> {
        stored.strip_prefix(&self.prefix)
    }

    /// The prefix all of the tenant's stored session ids share.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the agent (by its config) belongs to this tenant.
    pub fn owns(&self, agent: &aether_runtime::agents::Agent) -> bool {
        agent.config.framework_config.get(TENANT_KEY).and_then(|v| v.as_str()) == Some(&*self.name)
    }
}

/// Every tenant, by the hash of each of its keys.
///
/// A presented key is hashed (SHA-256) and its digest compared with *every* known digest in
/// constant time (`subtle`), with no early exit and no hash-map probe: how long a check takes says
/// nothing about how close a key came, nor which key matched.
#[derive(Debug)]
pub struct Tenants {
    by_key_digest: Vec<([u8; 32], Arc<Tenant>)>,
    anonymous: Option<Arc<Tenant>>,
    /// The operators' keys (`[admin]`), by hash.
    admin_digests: Vec<[u8; 32]>,
    names: Vec<Arc<str>>,
}

impl Tenants {
    pub fn new(cfg: &ServerConfig, redis: Option<&redis::aio::ConnectionManager>) -> Self {
        let mut by_key_digest = Vec::new();
        for t in &cfg.tenants {
            let limit = t.rate_limit.or(cfg.rate_limit);
            let limiter = limit.map(|l| RateLimiter::new(&t.name, l, redis));
            let tenant = Arc::new(Tenant::new(&t.name, limiter));
            // Validated config: every hash is 64 hex digits.
            for digest in t.api_key_sha256.iter().filter_map(|h| digest_from_hex(h)) {
                by_key_digest.retain(|(d, _)| *d != digest);
                by_key_digest.push((digest, Arc::clone(&tenant)));
            }
        }
        let anonymous = cfg.allow_anonymous.then(|| {
            Arc::new(Tenant::new(
                "default",
                cfg.rate_limit.map(|l| RateLimiter::new("default", l, redis)),
            ))
        });
        let mut names: Vec<Arc<str>> = by_key_digest.iter().map(|(_, t)| Arc::clone(&t.name)).collect();
        names.extend(anonymous.iter().map(|t| Arc::clone(&t.name)));
        names.sort();
        names.dedup();
        Self {
            by_key_digest,
            anonymous,
            admin_digests: cfg
                .admin
                .api_key_sha256
                .iter()
                .filter_map(|h| digest_from_hex(h))
                .collect(),
            names,
        }
    }

    /// Every tenant's name (sorted).
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// Checks an operator's key: 401 without a key or with an unknown one, 403 with a tenant's.
    pub(crate) fn admin(&self, authorization: Option<&HeaderValue>) -> Result<(), ApiError> {
        let key = bearer(authorization)?;
        let digest = key_digest(key);
        let admin = self
            .admin_digests
            .iter()
            .fold(Choice::from(0), |hit, d| hit | d.ct_eq(&digest));
        if bool::from(admin) {
            Ok(())
        } else if self.tenant_of(&digest).is_some() {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "auth.admin_required",
                "this route needs an admin key ([admin] in the config file, or AETHER_ADMIN_KEYS); a tenant's key sees only its tenant",
            ))
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "auth.invalid",
                "unknown API key",
            ))
        }
    }

    pub(crate) fn find(&self, authorization: Option<&HeaderValue>) -> Result<Arc<Tenant>, ApiError> {
        let Some(value) = authorization else {
            return self.anonymous.clone().ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "auth.missing",
                    "missing API key: send `Authorization: Bearer KEY`",
                )
            });
        };
        let key = bearer(Some(value))?;
        self.tenant_of(&key_digest(key))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "auth.invalid", "unknown API key"))
    }
}

impl Tenants {
    /// Whether a request with this `Authorization` header is served (a tenant's key, or no key
    /// when anonymous requests are allowed). For other servers that share the tenants'
    /// configuration (`aether mcp-serve --http`).
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        self.find(authorization).is_ok()
    }

    /// The tenant whose key has this digest: every digest is compared, in constant time each.
    fn tenant_of(&self, digest: &[u8; 32]) -> Option<Arc<Tenant>> {
        let mut found = None;
        for (d, tenant) in &self.by_key_digest {
            if bool::from(d.ct_eq(digest)) {
                found = Some(tenant);
            }
        }
        found.cloned()
    }
}

/// The key of an `Authorization: Bearer KEY` header.
fn bearer(authorization: Option<&HeaderValue>) -> Result<&str, ApiError> {
    let Some(value) = authorization else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "auth.missing",
            "missing API key: send `Authorization: Bearer KEY`",
        ));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "auth.invalid",
                "the Authorization header must be `Bearer KEY`",
            )
        })
}
