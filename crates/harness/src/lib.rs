//! The Aether Frame performance harness: the scenarios of the performance test plan, run against
//! the runtime through its public API, with statistics that do not flatter.
//!
//! * [`scenario`]: the catalog and how flags resolve against it;
//! * [`run`]: one scenario end to end, in four stages:
//!   * `build`: the target it drives (and [`check_options`], the rules that tie options together);
//!   * [`load`] (driven by `run`): the phases;
//!   * `figures`: what the measurements add up to, with the KPI verdicts;
//!   * `assemble`: the summary;
//! * [`endpoint`]: endpoint_load, the scenario that drives a model endpoint directly;
//! * [`target`]: what the harness drives (the in-process runtime; other targets plug in here);
//! * [`load`]: the load generator (closed loop, or open loop at a rate) and its recorders;
//! * [`stats`]: HDR histograms, their summaries and their serialised form;
//! * [`resources`]: the RSS and CPU sampler, and the memory drift's fits (`fit`: slopes with
//!   errors that allow for readings correlated with their neighbours);
//! * [`kpi`]: the plan's targets and their verdicts;
//! * [`summary`]: the runtime scenarios' summary JSON (schema version 1) and its readable table;
//! * [`report`]: either summary, rendered, named, written and judged one way ([`Report`]);
//! * [`compare`]: deltas between two summaries as Markdown;
//! * [`tool_calls`]: what one tool call costs in process and over MCP (tool_regression);
//! * `progress` and `error`: leaves every stage reports through ([`Progress`], [`HarnessError`]).

mod assemble;
mod build;
pub mod call;
pub mod compare;
pub mod endpoint;
mod error;
mod figures;
mod fit;
pub mod gate;
pub mod html;
mod http_answer;
pub mod http_target;

pub mod kpi;
pub mod load;
pub mod merge;
mod progress;
pub mod report;
pub mod resources;
pub mod run;
pub mod scenario;
pub mod slowest;
pub mod stats;
pub mod stored;
pub mod summary;
pub mod target;
pub mod timeline;
pub mod tool_calls;
mod trace_ids;
pub mod versus;

pub use build::{check_options, Choices};
pub use report::Report;
pub use run::{run_scenario, HarnessError, Progress, RunOptions};
pub use scenario::{ScenarioConfig, SessionMode, CATALOG};
pub use summary::Summary;
