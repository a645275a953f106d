//! The Aether Frame runtime.
//!
//! * [`Runtime`] wires everything and is what a user builds ([`RuntimeBuilder`]).
//! * [`engine`]: the never-panicking [`engine::Assistant`] entry point, request validation, the
//!   framework-adapter registry and the native adapter that runs turns.
//! * [`agents`]: agents created from configs, controlled reuse, runners, capacity slots.
//! * [`sessions`]: chat sessions with per-session turn ordering, bounded history windows,
//!   archive and recovery through an [`aether_store::SessionStore`].
//! * [`tools`] (crate `aether-tools`, re-exported): the tool registry, resolver, schema
//!   validation, built-in and demo tools, and the concurrent executor.
//! * [`model`] (crate `aether-providers`, re-exported): the model-provider trait, the simulated
//!   model and the real providers; [`multimodal`]: image checks and conversion.
//! * [`live`]: live sessions that stream chunks and take approvals; [`approvals`]: who must
//!   approve which tool calls.
//! * [`sweeper`]: idle reclamation of sessions, then runners, then agents.
//! * [`telemetry`]: the GenAI spans; [`meter`]: the GenAI metrics' one recording point.

pub mod agents;
pub mod approvals;

mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod live;

mod ids;
mod lease;
pub mod meter;
mod runtime;
pub mod sessions;
pub mod stats;
pub mod sweeper;
pub mod telemetry;

/// The model providers (crate `aether-providers`), re-exported.
pub use aether_providers as model;
/// Image checks and conversion (from `aether-providers`), re-exported.
pub use aether_providers::multimodal;
/// The tools (crate `aether-tools`), re-exported.
pub use aether_tools as tools;

pub use config::RuntimeConfig;
pub use error::EngineError;
pub use runtime::{AgentHandle, BuildError, Runtime, RuntimeBuilder};
pub use stats::StatsSnapshot;
