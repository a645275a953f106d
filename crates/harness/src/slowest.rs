//! The slowest requests of a run, kept by task id (and, over `--target`, trace id) so that a slow
//! percentile in the summary leads to the request itself: its spans, its server logs.
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
    /// The W3C trace id it was sent with (`--target` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// The [`KEEP`] slowest, in no order until [`Slowest::sorted`].
#[derive(Debug, Clone, Default)]
pub struct Slowest(Vec<(Duration, String, bool)>);

impl Slowest {
    /// Offers a request that took `latency`; `task_id` is made only when it is kept.
    pub fn offer(&mut self, latency: Duration, failed: bool, task_id: impl FnOnce() -> String) {
        if self.0.len() < KEEP {
            self.0.push((latency, task_id(), failed));
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
            self.0[i] = (latency, task_id(), failed);
        }
    }

    pub fn merge(&mut self, o: &Slowest) {
        for (latency, id, failed) in &o.0 {
            self.offer(*latency, *failed, || id.clone());
        }
    }

    /// Slowest first, with trace ids from `trace_id`.
    pub fn sorted(&self, trace_id: impl Fn(&str) -> Option<String>) -> Vec<SlowRequest> {
        let mut v = self.0.clone();
        v.sort_by_key(|e| std::cmp::Reverse(e.0));
        v.into_iter()
            .map(|(latency, task_id, failed)| SlowRequest {
                latency_ms: latency.as_secs_f64() * 1000.0,
                trace_id: trace_id(&task_id),
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
            s.offer(Duration::from_millis(ms), false, || format!("t{ms}"));
        }
        let mut made = 0;
        s.offer(Duration::from_millis(1), false, || {
            made += 1;
            "fast".into()
        });
        assert_eq!(made, 0, "a fast request is not kept, so no id is made");
        let mut other = Slowest::default();
        other.offer(Duration::from_millis(500), true, || "slow".into());
        s.merge(&other);
        let top = s.sorted(|id| Some(format!("trace-of-{id}")));
        assert_eq!(top.len(), KEEP);
        assert_eq!((top[0].task_id.as_str(), top[0].failed), ("slow", true));
        assert_eq!(top[0].trace_id.as_deref(), Some("trace-of-slow"));
        assert_eq!(top[1].task_id, "t99");
        assert_eq!(top[KEEP - 1].task_id, "t91");
    }
}
