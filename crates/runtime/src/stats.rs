//! Counters of the runtime: lock-free, readable at any time as a [`StatsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Monotonic counters, bumped on the hot path with relaxed atomics.
        #[derive(Debug, Default)]
        pub struct Stats { $($(#[$doc])* pub(crate) $name: AtomicU64,)* }

        /// A copy of the counters plus the live gauges.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
            /// Agents alive now.
            pub active_agents: u64,
            /// Runners alive now.
            pub active_runners: u64,
            /// Chat sessions held in memory now.
            pub active_sessions: u64,
        }

        impl Stats {
            pub(crate) fn snapshot(&self, active_agents: u64, active_runners: u64, active_sessions: u64) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Relaxed),)* active_agents, active_runners, active_sessions }
            }
        }
    };
}

counters! {
    /// Agents created (not counting reuse).
    agents_created,
    /// Agent-creation requests answered with an existing agent (controlled reuse).
    agents_reused,
    /// Agents removed by explicit cleanup.
    agents_cleaned_up,
    /// Runners created.
    runners_created,
    /// Chat sessions started with no prior history.
    sessions_created,
    /// Chat sessions brought back from the store (after cleanup, idle archive or restart).
    sessions_recovered,
    /// Turns whose chat session moved to another agent.
    agent_switches,
    /// Turns completed (successfully or not).
    turns,
    /// Turns that ended in an error.
    turns_failed,
    /// Model calls made.
    model_calls,
    /// Tool calls executed.
    tool_calls,
    /// Tool progress updates dropped because the live consumer was behind (progress is advisory).
    tool_progress_dropped,
    /// Sessions archived by the sweeper or by cleanup.
    reclaimed_sessions,
    /// Runners reclaimed.
    reclaimed_runners,
    /// Agents reclaimed by the sweeper.
    reclaimed_agents,
    /// Archived sessions purged from the store.
    purged_sessions,
    /// Turns that found their session's lease held by another instance and waited for it.
    lease_waits,
    /// Leases lost while their turn ran (the holder paused past the TTL).
    leases_lost,
    /// Turns refused with `session.busy`: their session stayed busy past `session_wait`.
    session_busy,
}

impl Stats {
    #[inline]
    pub(crate) fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// Bytes the process's allocator has handed out and not taken back (glibc's `mallinfo2`:
/// `uordblks` in the arenas plus `hblkhd` in mmapped chunks); `None` off glibc.
///
/// Why glibc's statistics and not jemalloc's: they need no allocator change (jemalloc means a C
/// build and a different allocator to measure, which the turn path would then be tuned for) and
/// they count exactly what part 13 fits, the allocated bytes. The cost: `mallinfo2` walks every
/// arena under its lock, so it is read once per sampling interval, off the async threads.
pub fn heap_allocated_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 has no preconditions; it returns a struct by value.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}
