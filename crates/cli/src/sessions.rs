//! `aether sessions`: list, show, delete and export chat sessions in the configured store.

use std::path::PathBuf;

use aether_store::{PageRequest, SessionFilter, SessionState, SessionStore};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::exit::CliError;
use crate::store_args::{self, StoreArgs, StoreKind};

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List sessions, optionally by user, agent or state.
    List(ListArgs),
    /// Show one session's record and a page of its events.
    Show(ShowArgs),
    /// Delete a session for good: its record, its events and its archive.
    Delete(IdArgs),
    /// Write a session and all its events as one JSON document.
    Export(ExportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StateArg {
    Active,
    Archived,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// Sessions per page.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Start after this session id (from the previous page).
    #[arg(long)]
    after: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    session_id: String,
    /// Events per page.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Show events after this sequence number.
    #[arg(long)]
    after: Option<u64>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct IdArgs {
    session_id: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct ExportArgs {
    session_id: String,
    /// Write to this file instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

async fn store(args: &StoreArgs) -> Result<std::sync::Arc<dyn SessionStore>, CliError> {
    if args.store == Some(StoreKind::Memory) {
        return Err(CliError::usage(
            "--store memory holds nothing between runs; use sqlite or postgres",
        ));
    }
    match args.config(StoreKind::Sqlite, StoreArgs::default_sqlite_path)? {
        // These commands read and manage stored sessions: they never create a store. A path with
        // no store at it is bad input, not an empty list.
        aether_store::StoreConfig::Sqlite { path, .. } => aether_store::SqliteStore::open_existing(&path)
            .await
            .map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn SessionStore>)
            .map_err(|e| {
                CliError::usage(format!(
                    "{e} (a store is made by `aether serve`, `aether chat` or `aether perf run --store sqlite`)"
                ))
            }),
        config => store_args::open(&config).await,
    }
}

fn failed(e: aether_store::StoreError) -> CliError {
    CliError::failed(e.to_string())
}

pub async fn run(cmd: SessionsCommand) -> Result<(), CliError> {
    match cmd {
        SessionsCommand::List(a) => {
            let s = store(&a.store).await?;
            let filter = SessionFilter {
                user_id: a.user,
                agent_id: a.agent,
                state: a.state.map(|s| match s {
                    StateArg::Active => SessionState::Active,
                    StateArg::Archived => SessionState::Archived,
                }),
            };
            let page = s
                .list_sessions(
                    &filter,
                    &PageRequest {
                        after: a.after,
                        limit: a.limit.max(1),
                    },
                )
                .await
                .map_err(failed)?;
            if a.json {
                println!("{}", json!({"sessions": page.sessions, "next_after": page.next_after}));
                return Ok(());
            }
            println!(
                "{:<36} {:<9} {:>7} {:<16} {:<28} UPDATED",
                "SESSION", "STATE", "EVENTS", "USER", "AGENT"
            );
            for r in &page.sessions {
                let state = if r.state == SessionState::Active {
                    "active"
                } else {
                    "archived"
                };
                println!(
                    "{:<36} {:<9} {:>7} {:<16} {:<28} {}",
                    r.session_id,
                    state,
                    r.event_count,
                    r.user_id.as_deref().unwrap_or("-"),
                    r.agent_id,
                    r.updated_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
            if let Some(next) = page.next_after {
                println!("\nmore: --after {next}");
            }
            Ok(())
        }
        SessionsCommand::Show(a) => {
            let s = store(&a.store).await?;
            let record =
                s.get_session(&a.session_id).await.map_err(failed)?.ok_or_else(|| {
                    CliError::usage(format!("no session `{}` in {}", a.session_id, describe(s.as_ref())))
                })?;
            let page = s
                .events_page(&a.session_id, a.after, a.limit.max(1))
                .await
                .map_err(failed)?;
            if a.json {
                println!(
                    "{}",
                    json!({"session": record, "events": page.events, "next_after_seq": page.next_after_seq})
                );
                return Ok(());
            }
            println!("{}", serde_json::to_string_pretty(&record).unwrap_or_default());
            for e in &page.events {
                let text = e.message.text_content();
                let calls = e.message.tool_calls().map_or(0, <[_]>::len);
                let extra = if calls > 0 {
                    format!(" [{calls} tool calls]")
                } else if !e.tool_results.is_empty() {
                    format!(" [{} tool results]", e.tool_results.len())
                } else {
                    String::new()
                };
                println!(
                    "#{:<5} {:<9} {}{extra}",
                    e.seq,
                    format!("{:?}", e.message.role).to_lowercase(),
                    text
                );
            }
            if let Some(next) = page.next_after_seq {
                println!("\nmore: --after {next}");
            }
            Ok(())
        }
        SessionsCommand::Delete(a) => {
            let s = store(&a.store).await?;
            if s.delete_session(&a.session_id).await.map_err(failed)? {
                println!("deleted session `{}` with its events and archive", a.session_id);
                Ok(())
            } else {
                Err(CliError::usage(format!(
                    "no session `{}` in {}",
                    a.session_id,
                    describe(s.as_ref())
                )))
            }
        }
        SessionsCommand::Export(a) => {
            let s = store(&a.store).await?;
            let record =
                s.get_session(&a.session_id).await.map_err(failed)?.ok_or_else(|| {
                    CliError::usage(format!("no session `{}` in {}", a.session_id, describe(s.as_ref())))
                })?;
            let mut events = Vec::new();
            let mut after = None;
            loop {
                let page = s.events_page(&a.session_id, after, 1000).await.map_err(failed)?;
                events.extend(page.events);
                match page.next_after_seq {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            let doc = serde_json::to_string_pretty(&json!({"session": record, "events": events})).unwrap_or_default();
            match a.output {
                Some(path) => {
                    std::fs::write(&path, doc)
                        .map_err(|e| CliError::failed(format!("cannot write `{}`: {e}", path.display())))?;
                    eprintln!("exported {} events to {}", events.len(), path.display());
                }
                None => println!("{doc}"),
            }
            Ok(())
        }
    }
}

fn describe(s: &dyn SessionStore) -> String {
    let info = s.info();
    match info.location {
        Some(l) => format!("the {} store at {l}", info.kind),
        None => format!("the {} store", info.kind),
    }
}
