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
    /// Sweeps that gave the session map's slack back: a burst had left its table with more than
    /// 8 slots per session still live (`aether_store::shrink_if_sparse`).
    session_table_shrinks,
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

/// Bytes the process's allocators have handed out and not taken back: glibc's (`mallinfo2`:
/// `uordblks` in the arenas plus `hblkhd` in mmapped chunks) plus, with the `jemalloc` feature,
/// jemalloc's (`stats.allocated`); `None` where neither can be read.
///
/// Both are read because a process has both: the `aether` binary's global allocator is jemalloc
/// (every Rust allocation, and SQLite's, which the binary hands jemalloc), while other C code it
/// links (llama.cpp, libc itself) allocates through glibc's `malloc`. A process whose global
/// allocator is glibc's (a library user's, the tests') reads jemalloc's count as zero, so the sum
/// is right either way.
///
/// Why jemalloc for the binary: measured side by side (2026-12-04, `LD_PRELOAD`ed then linked),
/// it made the in-process turn 8–21 % faster than glibc's allocator did, and halved what span
/// export costs the turn (a span is allocated on the turn's worker and freed on the exporter's
/// thread, a pattern glibc's per-thread caches serve badly: the likely cause, not checked
/// further). Its statistics also count exactly what part 13 fits, the allocated bytes.
/// `mallinfo2` walks every arena under its lock and jemalloc's epoch refresh merges its arenas'
/// counters, so this is read once per sampling interval, off the async threads.
pub fn heap_allocated_bytes() -> Option<u64> {
    heap_allocated().total()
}

/// The allocators' allocated bytes, each apart (see [`heap_allocated_bytes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapAllocated {
    /// glibc's `malloc`: in the `aether` binary, what C code allocates there (llama.cpp, libc
    /// itself; SQLite is handed jemalloc); where glibc is the global allocator, everything.
    pub malloc: Option<u64>,
    /// jemalloc's, with the `jemalloc` feature (the binary's Rust heap).
    pub jemalloc: Option<u64>,
}

impl HeapAllocated {
    /// Both together; `None` where neither could be read.
    pub fn total(self) -> Option<u64> {
        match (self.malloc, self.jemalloc) {
            (None, None) => None,
            (g, j) => Some(g.unwrap_or(0) + j.unwrap_or(0)),
        }
    }
}

/// Reads both allocators' counts once (the cost of [`heap_allocated_bytes`]).
pub fn heap_allocated() -> HeapAllocated {
    HeapAllocated {
        malloc: glibc_allocated_bytes(),
        jemalloc: jemalloc_allocated_bytes(),
    }
}

fn glibc_allocated_bytes() -> Option<u64> {
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

fn jemalloc_allocated_bytes() -> Option<u64> {
    #[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
    {
        // The statistics are a snapshot taken at the last epoch: advance it, then read.
        tikv_jemalloc_ctl::epoch::advance().ok()?;
        tikv_jemalloc_ctl::stats::allocated::read().ok().map(|b| b as u64)
    }
    #[cfg(not(all(feature = "jemalloc", not(target_env = "msvc"))))]
    {
        None
    }
}
