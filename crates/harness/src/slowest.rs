//! The slowest requests of a run, kept by task id and trace id (the one the turn's result names
//! when the runtime traced it, else, over `--target`, the one the request was sent with) so that
//! a slow percentile in the summary leads to the request itself: its spans, its server logs.
//! Bounded: [`KEEP`] per recorder; offering a request allocates only when it is kept.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How many slowest requests a summary keeps.
pub const KEEP: usize = 10;

/// One of the slowest requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowRequest {
    pub latency_ms: f64,
    /// The task id of its last step (the turn's, or the agent creation's when that failed).
    pub task_id: String,
    pub failed: bool,
    /// Its W3C trace id: the one its result named (`metadata.trace_id`, when the runtime traced
    /// it), else the one it was sent with (`--target` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// One kept request: latency, task id, failed, the trace id its result named.
type Kept = (Duration, String, bool, Option<String>);

/// The [`KEEP`] slowest, in no order until [`Slowest::sorted`].
#[derive(Debug, Clone, Default)]
pub struct Slowest(Vec<Kept>);

impl Slowest {
    /// Offers a request that took `latency` (with the trace id its result named, if any);
    /// `task_id` is made only when it is kept.
    pub fn offer(&mut self, latency: Duration, failed: bool, trace: Option<String>, task_id: impl FnOnce() -> String) {
        if self.0.len() < KEEP {
            self.0.push((latency, task_id(), failed, trace));
            return;
        }
        let (i, least) = self
            .0
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.0)
            .map(|(i, e)| (i, e.0))
            .unwrap_or_default();
        if latency > least {
            self.0[i] = (latency, task_id(), failed, trace);
        }
    }

    pub fn merge(&mut self, o: &Slowest) {
        for (latency, id, failed, trace) in &o.0 {
            self.offer(*latency, *failed, trace.clone(), || id.clone());
        }
    }

    /// Slowest first; a request whose result named no trace gets one from `trace_id` (the
    /// `traceparent` it was sent with, over `--target`).
    pub fn sorted(&self, trace_id: impl Fn(&str) -> Option<String>) -> Vec<SlowRequest> {
        let mut v = self.0.clone();
        v.sort_by_key(|e| std::cmp::Reverse(e.0));
        v.into_iter()
            .map(|(latency, task_id, failed, trace)| SlowRequest {
                latency_ms: latency.as_secs_f64() * 1000.0,
                trace_id: trace.or_else(|| trace_id(&task_id)),
                task_id,
                failed,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_slowest_and_allocates_only_for_them() {
        let mut s = Slowest::default();
        for ms in 0..100u64 {
            s.offer(Duration::from_millis(ms), false, None, || format!("t{ms}"));
        }
        let mut made = 0;
        s.offer(Duration::from_millis(1), false, None, || {
            made += 1;
            "fast".into()
        });
        assert_eq!(made, 0, "a fast request is not kept, so no id is made");
        let mut other = Slowest::default();
        other.offer(Duration::from_millis(500), true, Some("from-the-result".into()), || {
            "slow".into()
        });
        s.merge(&other);
        let top = s.sorted(|id| Some(format!("trace-of-{id}")));
        assert_eq!(top.len(), KEEP);
        assert_eq!((top[0].task_id.as_str(), top[0].failed), ("slow", true));
        assert_eq!(
            top[0].trace_id.as_deref(),
            Some("from-the-result"),
            "the result's trace id comes first"
        );
        assert_eq!(top[1].trace_id.as_deref(), Some("trace-of-t99"));
        assert_eq!(top[1].task_id, "t99");
        assert_eq!(top[KEEP - 1].task_id, "t91");
    }
}
