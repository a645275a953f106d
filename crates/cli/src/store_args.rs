//! `--store`, `--store-path`, `--store-url` and `--durability`: which session store a command
//! uses. Shared by `chat`, `perf run` and `sessions`.

use std::path::PathBuf;
use std::sync::Arc;

use aether_store::{Durability, SessionStore, StoreConfig};
use clap::{Args, ValueEnum};

use crate::exit::CliError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In process only; nothing survives.
    Memory,
    /// One local file (WAL mode), the embedded default.
    Sqlite,
    /// A shared database, for several instances.
    Postgres,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// A turn's events are durable before its result returns.
    Sync,
    /// Written in the background through a bounded queue, flushed on exit.
    Async,
}

/// Where the default SQLite file lives.
pub const DEFAULT_SQLITE_PATH: &str = ".aether/sessions.db";

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Session store (default: sqlite for `chat` and `sessions`, memory for `perf run`).
    #[arg(long, value_enum)]
    pub store: Option<StoreKind>,

    /// SQLite file (created on first use). Default `.aether/sessions.db`; for `perf run`, a file in
    /// a temporary directory.
    #[arg(long, value_name = "PATH", env = "AETHER_STORE_PATH")]
    pub store_path: Option<PathBuf>,

    /// PostgreSQL URL, e.g. postgres://user@127.0.0.1:5432/db.
    #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
    pub store_url: Option<String>,

    /// When writes are durable (sqlite and postgres).
    #[arg(long, value_enum, default_value = "sync")]
    pub durability: DurabilityArg,
}

impl StoreArgs {
    /// The store to open; `default_kind` when `--store` is not given, and `default_path` for a
    /// SQLite store without `--store-path`.
    pub fn config(
        &self,
        default_kind: StoreKind,
        default_path: impl FnOnce() -> PathBuf,
    ) -> Result<StoreConfig, CliError> {
        let durability = match self.durability {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Async => Durability::Async,
        };
        Ok(match self.store.unwrap_or(default_kind) {
            StoreKind::Memory => StoreConfig::Memory,
            StoreKind::Sqlite => StoreConfig::Sqlite {
                path: self.store_path.clone().unwrap_or_else(default_path),
                durability,
            },
            StoreKind::Postgres => StoreConfig::Postgres {
                url: self.store_url.clone().ok_or_else(|| {
                    CliError::usage("--store postgres needs --store-url URL (or DATABASE_URL in the environment)")
                })?,
                durability,
                max_connections: 16,
            },
        })
    }

    pub fn default_sqlite_path() -> PathBuf {
        PathBuf::from(DEFAULT_SQLITE_PATH)
    }
}

/// Opens a store; failures are bad input (exit code 2) naming the path or host.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn SessionStore>, CliError> {
    aether_store::open(config)
        .await
        .map_err(|e| CliError::usage(e.to_string()))
}
