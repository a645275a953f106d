//! The `adk` framework: Aether agents run by adk-rust (Google's Agent Development Kit, in Rust).
//!
//! The original Aether Frame was a layer over Google's ADK. This crate brings ADK back as a
//! second framework beside the native engine: an agent created with `framework_config.framework
//! = "adk"` (or `metadata.framework`) has each turn run by adk-rust's `LlmAgent` and `Runner`,
//! whose model↔tool loop, tool dispatch and event stream are adk's own. Aether supplies only
//! implementations of adk's traits, so both frameworks see the same models, tools and sessions:
//!
//! * `model`: Aether's model providers (the simulator with its profiles, OpenAI-compatible,
//!   Gemini, local) as adk's `Llm`;
//! * `tools`: Aether's tools (built-in, demo, MCP) as adk tools, with the same schemas;
//! * `session`: an adk session service over Aether's chat sessions, so ADK chats are stored,
//!   listed, archived and expired like any other;
//! * `run`: the loop itself ([`AdkLoop`]), inside the runtime's turn frame (sessions, runners,
//!   spans, metrics, commit, report; see `aether_runtime::engine::TurnLoop`); `convert` maps
//!   messages and events both ways; `turn` is how adk's pieces find the turn they serve.
//!
//! Each stored event of an ADK turn carries adk's invocation and event ids in its message's
//! metadata (`adk_invocation_id`, `adk_event_id`). adk's own tracing spans are not exported: the
//! runtime's GenAI spans (`invoke_agent`, `chat`, `execute_tool`) are made once, by the frame,
//! the model and the tool executor, whichever framework runs the turn.
//!
//! ```no_run
//! let runtime = aether_adk::with_adk(aether_runtime::Runtime::builder()).build()?;
//! # Ok::<(), aether_runtime::BuildError>(())
//! ```

mod convert;
mod model;
mod run;
mod session;
mod tools;
mod turn;

use std::sync::Arc;

use aether_runtime::engine::TurnLoop;
use aether_runtime::RuntimeBuilder;

pub use convert::{EVENT_KEY, INVOCATION_KEY};
pub use run::AdkLoop;

/// The framework's name, as agents name it.
pub const NAME: &str = "adk";

/// The adk-rust release this crate is built against (its crates are pinned to it).
pub const ADK_RUST_VERSION: &str = "2.3.0";

/// Registers the `adk` framework on a runtime being built.
pub fn with_adk(builder: RuntimeBuilder) -> RuntimeBuilder {
    builder.framework_loop(NAME, |kit| Ok(Arc::new(AdkLoop::new(kit)) as Arc<dyn TurnLoop>))
}
