//! The Aether Frame runtime.
//!
//! * [`Runtime`] wires everything and is what a user builds ([`RuntimeBuilder`]).
//! * [`engine`]: the never-panicking [`engine::Assistant`] entry point, request validation, the
//!   framework-adapter registry and the native adapter that runs turns.
//! * [`agents`]: agents created from configs, controlled reuse, runners, capacity slots.
//! * [`sessions`]: chat sessions with per-session turn ordering, bounded history windows,
//!   archive and recovery through an [`aether_store::SessionStore`].
//! * [`tools`]: the tool registry, resolver, schema validation, built-in and demo tools, and the
//!   concurrent executor.
//! * [`model`]: the model-provider trait and the simulated model.
//! * [`sweeper`]: idle reclamation of sessions, then runners, then agents.

pub mod agents;
pub mod approvals;

mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod live;

mod ids;
pub mod model;
pub mod multimodal;
mod runtime;
pub mod sessions;
pub mod stats;
pub mod sweeper;
pub mod tools;
mod util;

pub use config::RuntimeConfig;
pub use error::EngineError;
pub use runtime::{AgentHandle, BuildError, Runtime, RuntimeBuilder};
pub use stats::StatsSnapshot;
