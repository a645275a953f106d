//! What the SQLite store's read connections gain from their page caches: the same reads
//! (a session's record, then its history window, at random over 50,000 sessions, four at a
//! time) against one file, with each reader's `cache_size` at SQLite's default (2,000 KiB) and
//! at smaller sizes, side by side in one run, as rates relative to the default.
//!
//! Three workloads: reads alone over all the sessions (the caches keep their pages from one
//! read to the next), the same over a hot set of 200 sessions that SQLite's default cache
//! holds whole, and reads beside a writer appending events (after each commit a reader's next
//! read finds the database changed, and SQLite clears that reader's cache:
//! `pagerBeginReadTransaction` in `sqlite3.c`).
//!
//! `cargo bench -p aether-store --bench read_cache` (release; ~2 minutes). `ROUNDS` (default 3)
//! repeats the sizes in turn, so that drift on a shared machine falls on all of them alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_contracts::{SessionEvent, UniversalMessage};
use aether_store::{SessionRecord, SessionState, SessionStore, SqliteOptions, SqliteStore};
use chrono::Utc;
use rand::{Rng, SeedableRng};

const SESSIONS: usize = 50_000;
const EVENTS: u64 = 4;
const READERS: usize = 4;
const READS_PER_READER: usize = 20_000;
const SIZES_KIB: [u32; 4] = [2_000, 256, 128, 64];

fn id(i: usize) -> String {
    format!("session-{i:06}")
}

fn event(session: &str, seq: u64) -> Arc<SessionEvent> {
    let text = format!(
        "message {seq} of {session}: {}",
        "lorem ipsum dolor sit amet ".repeat(12)
    );
    Arc::new(SessionEvent::new(
        seq,
        Arc::from(format!("ses-{session}")),
        Arc::from("agent"),
        UniversalMessage::user(text.as_str()),
        vec![],
    ))
}

/// A new session's record, with no events yet.
fn record(session: &str) -> SessionRecord {
    let now = Utc::now();
    SessionRecord {
        session_id: Arc::from(session),
        user_id: None,
        agent_id: "agent".into(),
        internal_session_id: format!("ses-{session}"),
        state: SessionState::Active,
        created_at: now,
        updated_at: now,
        event_count: 0,
    }
}

async fn populate(store: &SqliteStore) {
    for chunk in (0..SESSIONS).collect::<Vec<_>>().chunks(1_000) {
        let writes = chunk.iter().map(|&i| async move {
            let session = id(i);
            store.put_session(record(&session)).await.expect("put");
            let events: Vec<_> = (0..EVENTS).map(|s| event(&session, s)).collect();
            store.append_events(&session, &events).await.expect("append");
        });
        futures::future::join_all(writes).await;
    }
}

/// Reads per second over all readers, each reading sessions drawn from the first `among`; with
/// a writer beside them appending to `writer_session` when one is given.
async fn measure(store: Arc<SqliteStore>, seed: u64, among: usize, writer_session: Option<String>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = writer_session.map(|session| {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        tokio::spawn(async move {
            // A session of its own, appended to one event per commit until the readers finish.
            store.put_session(record(&session)).await.expect("put");
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                store
                    .append_events(&session, &[event(&session, seq)])
                    .await
                    .expect("append");
                seq += 1;
            }
        })
    });
    let started = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut rng = rand::rngs::SmallRng::seed_from_u64(seed * 31 + r as u64);
                for _ in 0..READS_PER_READER {
                    let session = id(rng.random_range(0..among));
                    let record = store.get_session(&session).await.expect("read");
                    assert!(record.is_some(), "{session} was written");
                    let window = store.load_window(&session, 20).await.expect("read");
                    assert_eq!(window.events.len() as u64, EVENTS);
                }
            })
        })
        .collect();
    for r in readers {
        r.await.expect("reader");
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = writer {
        w.await.expect("writer");
    }
    (READERS * READS_PER_READER) as f64 / elapsed.max(Duration::from_nanos(1)).as_secs_f64()
}

async fn run() {
    let dir = std::env::temp_dir().join(format!("aether-read-cache-{}", std::process::id()));
    let path = dir.join("sessions.db");
    {
        let store = SqliteStore::open(&path).await.expect("open");
        populate(&store).await;
    }
    let rounds: u64 = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    println!(
        "SQLite store, {SESSIONS} sessions of {EVENTS} events; {READERS} readers x {READS_PER_READER} \
         reads (a record and its window) each, {rounds} rounds; reads/s"
    );
    let workloads = [
        ("reads alone, over all the sessions", SESSIONS, false),
        (
            "reads alone, over 200 sessions (a hot set that 2,000 KiB holds)",
            200,
            false,
        ),
        (
            "reads over all the sessions beside a writer (one commit after another)",
            SESSIONS,
            true,
        ),
    ];
    for (name, among, writing) in workloads {
        let mut rates = vec![Vec::new(); SIZES_KIB.len()];
        for round in 0..rounds {
            for (k, &kib) in SIZES_KIB.iter().enumerate() {
                let store = Arc::new(
                    SqliteStore::open_with(&path, SqliteOptions { read_cache_kib: kib })
                        .await
                        .expect("open"),
                );
                let writer = writing.then(|| format!("writer-{round}-{kib}"));
                rates[k].push(measure(store, round, among, writer).await);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let base = median(&mut rates[0].clone());
        println!(
            "\n{}\n| read cache per reader | reads/s (median of {rounds}) | / 2,000 KiB's |\n|---|---|---|",
            name
        );
        for (k, &kib) in SIZES_KIB.iter().enumerate() {
            let m = median(&mut rates[k]);
            println!("| {kib} KiB | {m:.0} | {:.2} |", m / base);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(run());
}
