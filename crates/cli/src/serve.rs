//! `aether serve`: the HTTP API (crate aether-server) over a runtime built from flags, a TOML config
//! file and the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aether_runtime::{Runtime, RuntimeConfig};
use aether_server::{AppState, ServerConfig};
use clap::Args;

use crate::exit::CliError;
use crate::framework_args::{self, FrameworkArgs};
use crate::mcp_args::McpArgs;
use crate::provider_args::ProviderArgs;
use crate::sim_args::SimArgs;
use crate::store_args::{self, StoreArgs, StoreKind};

#[derive(Args)]
#[command(after_long_help = "\
Routes (JSON with the contracts' names; bearer API keys; ids are per tenant):
  POST /v1/agents · GET /v1/agents · GET|DELETE /v1/agents/{id}
  POST /v1/tasks (TaskRequest -> TaskResult; 504 with a TaskResult when the turn outlives --request-timeout-s)
  POST /v1/tasks/stream (server-sent events of TaskStreamChunk; ?keep_open=true for follow-ups;
       closing the connection cancels the turn)
  POST /v1/live/{task_id}/messages · /approvals/{interaction_id} · /cancel · GET /v1/live/{task_id}/pending
  GET /v1/sessions (?after=&limit=&agent_id=&user_id=&state=) · GET|DELETE /v1/sessions/{id}
  GET /v1/sessions/{id}/events (?after_seq=&limit=)
  GET /healthz · GET /readyz · GET /metrics (Prometheus) · GET /openapi.json
  GET /v1/admin/stats (admin key: runtime counters, admission, live turns by tenant, process RSS/CPU)
  GET /debug/pprof/profile?seconds=N[&format=flamegraph] (admin key: a CPU profile, pprof or SVG;
       N at most 60; one at a time, another gets 409)

API keys: AETHER_API_KEYS=key1=tenant1,key2=tenant2 (development), or in the config file as SHA-256
hashes (`printf %s KEY | sha256sum`). A tenant never sees another's agents or sessions (404).
Admin keys (operators; they read /v1/admin/* for all tenants, and nothing else): AETHER_ADMIN_KEYS=key1,key2,
or [admin] api_key_sha256 = [...] in the config file. `aether perf run --target URL --admin-key KEY`
reads the stats route at each interval, so the report shows the server's side beside the client's.

Config file (TOML; every key optional):
  allow_anonymous = false
  rate_limit = { soft_rps = 50.0, hard_rps = 100.0, burst = 200.0 }   # default for every tenant
  [limits]
  max_body_bytes = 33554432      # larger bodies get 413
  request_timeout_s = 300.0      # a longer turn gets 504
  max_in_flight = 4096           # turns running at once
  admission_queue = 16384        # turns waiting; when full, 503 with Retry-After
  max_live_sessions = 10000
  drain_timeout_s = 30.0         # on SIGTERM/Ctrl-C: finish in-flight turns up to this long
  [admin]
  api_key_sha256 = [\"<64 hex digits>\"]
  [[tenants]]
  name = \"acme\"
  api_key_sha256 = [\"<64 hex digits>\"]
  rate_limit = { soft_rps = 10.0, hard_rps = 20.0, burst = 40.0 }

With --store postgres, instances on the same database form a cluster: any of them serves any
session (each turn catches up with what the others appended; the store's event-count guard keeps
every session's history in one order), agents created on one are adopted by the others, and a
live turn's message, approval, cancel or pending request may land on any instance: it is forwarded
to the one running the turn over PostgreSQL NOTIFY. No sticky load balancing is needed.

Above a tenant's soft rate, requests pass with the header x-ratelimit-soft: exceeded; above its hard
rate they get 429 with Retry-After.

Examples:
  AETHER_API_KEYS=dev-key=dev aether serve --bind 127.0.0.1:8080 --time-scale 0
  aether serve --config serve.toml --store postgres --store-url postgres://127.0.0.1/aether --log-format json
  aether perf run --scenario burst_load --target http://127.0.0.1:8080 --api-key dev-key")]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,

    /// TOML config file: limits, tenants with hashed API keys, rate limits.
    #[arg(long, value_name = "FILE", env = "AETHER_SERVE_CONFIG")]
    config: Option<PathBuf>,

    /// Redis for per-tenant rate limits shared by every instance (e.g. redis://127.0.0.1:6379);
    /// without it each instance limits on its own.
    #[arg(long, value_name = "URL", env = "AETHER_REDIS_URL")]
    redis_url: Option<String>,

    /// Development only: accept requests without an API key (tenant `default`).
    #[arg(long)]
    allow_anonymous: bool,

    /// Turns running at once (overrides the config file).
    #[arg(long)]
    max_in_flight: Option<usize>,

    /// Turns that may wait for a slot before 503 (overrides the config file).
    #[arg(long)]
    admission_queue: Option<usize>,

    /// Largest request body in bytes (overrides the config file).
    #[arg(long)]
    max_body_bytes: Option<usize>,

    /// Deadline of one turn in seconds (overrides the config file).
    #[arg(long)]
    request_timeout_s: Option<f64>,

    /// Longest a turn waits for its session, in seconds: behind earlier turns of the same session
    /// on this instance and, on PostgreSQL, for another instance's turn to give the session's
    /// lease back. Past it the turn answers 503 `session.busy` with Retry-After.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    session_wait_s: f64,

    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    sim: SimArgs,

    /// Sets the default framework: the one agents created without `framework_config.framework`
    /// (or `metadata.framework`) run on.
    #[command(flatten)]
    framework: FrameworkArgs,

    #[command(flatten)]
    provider: ProviderArgs,

    #[command(flatten)]
    mcp: McpArgs,
}

/// The server's configuration file (or the defaults) with the keys of the environment
/// (`AETHER_API_KEYS`, `AETHER_ADMIN_KEYS`): the tenants `serve` and `mcp-serve --http` share.
pub fn tenant_config(file: Option<&std::path::Path>, allow_anonymous: bool) -> Result<ServerConfig, CliError> {
    let mut cfg = match file {
        Some(p) => ServerConfig::from_file(p).map_err(|e| CliError::usage(e.to_string()))?,
        None => ServerConfig::default(),
    };
    if let Ok(keys) = std::env::var("AETHER_API_KEYS") {
        cfg.add_env_keys(&keys).map_err(|e| CliError::usage(e.to_string()))?;
    }
    if let Ok(keys) = std::env::var("AETHER_ADMIN_KEYS") {
        cfg.add_env_admin_keys(&keys);
    }
    cfg.allow_anonymous |= allow_anonymous;
    Ok(cfg)
}

/// `meter`: a GenAI meter to feed beside `/metrics` (the OTLP export), if any.
pub async fn run(a: ServeArgs, meter: Option<Arc<dyn aether_runtime::meter::GenAiMeter>>) -> Result<(), CliError> {
    let default_framework = a.framework.chosen()?.unwrap_or("native").to_owned();
    let mut cfg = tenant_config(a.config.as_deref(), a.allow_anonymous)?;
    let l = &mut cfg.limits;
    l.max_in_flight = a.max_in_flight.unwrap_or(l.max_in_flight);
    l.admission_queue = a.admission_queue.unwrap_or(l.admission_queue);
    l.max_body_bytes = a.max_body_bytes.unwrap_or(l.max_body_bytes);
    l.request_timeout_s = a.request_timeout_s.unwrap_or(l.request_timeout_s);
    cfg.validate().map_err(|e| CliError::usage(e.to_string()))?;
    if cfg.allow_anonymous {
        tracing::warn!("--allow-anonymous: requests without an API key are served as tenant `default`");
    }

    if !(a.session_wait_s.is_finite() && a.session_wait_s > 0.0 && a.session_wait_s <= 3600.0) {
        return Err(CliError::usage(format!(
            "--session-wait-s: expected seconds in (0, 3600], got {}",
            a.session_wait_s
        )));
    }
    let store_cfg = a.store.config(StoreKind::Sqlite, StoreArgs::default_sqlite_path)?;
    // On PostgreSQL, instances form a cluster: shared agents, sessions and live-turn control.
    let cluster = match &store_cfg {
        aether_store::StoreConfig::Postgres { url, .. } => Some(
            aether_server::cluster::Cluster::connect(url)
                .await
                .map_err(CliError::usage)?,
        ),
        _ => None,
    };
    let redis = match &a.redis_url {
        Some(url) => Some(
            aether_server::limits::connect_redis(url)
                .await
                .map_err(CliError::usage)?,
        ),
        None => None,
    };
    let store = store_args::open(&store_cfg).await?;
    let store_info = store.info();
    // Every store call timed, for /metrics (aether_store_duration_seconds).
    let (store, store_timings) = aether_server::store_timing::timed(store);
    let (builder, provider) = a
        .provider
        .apply(framework_args::install(Runtime::builder().store(store)))?;
    let rt = builder
        .config(RuntimeConfig {
            shared_store: cluster.is_some(),
            instance_name: cluster.as_ref().map(|c| c.connection_name()),
            session_wait: std::time::Duration::from_secs_f64(a.session_wait_s),
            default_framework,
            ..RuntimeConfig::default()
        })
        .simulated_model(a.sim.sim_config()?)
        .demo_tools(a.sim.demo_config())
        .build()
        .map_err(|e| CliError::failed(e.to_string()))?;
    let mut mcp = a.mcp.attach(rt.tools()).await?;
    let state = AppState::with(
        Arc::new(rt),
        &cfg,
        aether_server::Shared {
            cluster: cluster.clone(),
            redis,
            mcp: mcp.as_ref().map(|h| h.clients().to_vec()).unwrap_or_default(),
            store_timings: Some(store_timings),
            meter,
        },
    );
    let listener = tokio::net::TcpListener::bind(a.bind)
        .await
        .map_err(|e| CliError::usage(format!("cannot listen on {}: {e}", a.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::failed(format!("cannot read the bound address: {e}")))?;
    let model = match &provider {
        None => "the SIMULATED model (no real provider configured)".to_owned(),
        Some((name, _)) => format!("provider {name} at {}", a.provider.url()),
    };
    let cluster_note = cluster
        .as_ref()
        .map(|c| format!(" · cluster instance {} on the shared PostgreSQL", c.instance()))
        .unwrap_or_default();
    eprintln!(
        "aether serve: listening on http://{addr} · {model} · {} store{} · {} tenant(s){cluster_note}",
        store_info.kind,
        store_info
            .location
            .as_deref()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default(),
        cfg.tenants.len()
    );
    let left = aether_server::serve(listener, state, shutdown_signal())
        .await
        .map_err(|e| CliError::failed(format!("server failed: {e}")))?;
    if left > 0 {
        return Err(CliError::failed(format!(
            "{left} request(s) were still running at the drain deadline"
        )));
    }
    if let Some(hub) = mcp.as_mut() {
        hub.shutdown().await;
    }
    eprintln!("aether serve: stopped; every accepted request finished and the store is flushed");
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
