//! [`Decision`]: whether a tool call may run, as the one who decides (a person, a policy, or the
//! runtime when nobody can be asked) said it.

use std::time::Duration;

/// The outcome of asking about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approved,
    /// Refused by a person, or by the runtime when nobody can be asked; the reason says which.
    Denied(String),
    /// Nobody answered in time and the policy is `auto_cancel`.
    TimedOut(Duration),
}
