//! The runtime over durable stores: a restart continues sessions, concurrent turns stay ordered
//! on SQLite and PostgreSQL, idle expiry archives to the store, and the session API.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_runtime::{Runtime, RuntimeConfig};
use aether_store::{
    EventPage, HistoryWindow, Page, PageRequest, PostgresStore, SessionEvent, SessionFilter, SessionRecord,
    SessionState, SessionStore, SqliteStore, StoreError, StoreInfo,
};
use common::*;
use serde_json::json;
use tokio::time::Instant;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// A SQLite file in a directory of its own, removed when the test is done with it.
struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new() -> Self {
        Self(std::env::temp_dir().join(unique("aether-durable")))
    }

    fn path(&self) -> std::path::PathBuf {
        self.0.join("sessions.db")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn runtime_on(store: Arc<dyn SessionStore>, cfg: RuntimeConfig) -> Runtime {
    builder(0, 0).config(cfg).store(store).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_continues_every_session_from_sqlite() {
    let db = TempDb::new();
    let path = db.path();
    {
        let rt = runtime_on(Arc::new(SqliteStore::open(&path).await.unwrap()), quiet_config());
        let agent = create(&rt, config(&["crm_lookup"])).await;
        for i in 0..3 {
            assert!(turn(&rt, &agent, "kept", &format!("before restart {i}"))
                .await
                .is_success());
        }
        rt.shutdown().await.unwrap();
    }
    let rt = runtime_on(Arc::new(SqliteStore::open(&path).await.unwrap()), quiet_config());
    let agent = create(&rt, config(&["crm_lookup"])).await;
    let r = turn(&rt, &agent, "kept", "after restart").await;
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(meta(&r, "session.recovered"), &json!(true));
    assert_eq!(
        meta(&r, "session.agent_switched"),
        &json!(true),
        "the old agent died with the process"
    );
    let events = rt.session_events("kept", None, 100).await.unwrap().events;
    assert_eq!(events.len(), 16, "3 turns of 4 events before, 1 after");
    assert!(events.iter().enumerate().all(|(i, e)| e.seq == i as u64));
    assert_eq!(events[0].message.text_content(), "before restart 0");
    assert_eq!(events[12].message.text_content(), "after restart");
}

async fn sixty_four_writers_on_one_session(store: Arc<dyn SessionStore>) {
    let rt: Shared = Arc::new(runtime_on(store, quiet_config()));
    let agent = create(&rt, config(&[])).await;
    let chat = unique("hot");
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (rt, agent, chat) = (Arc::clone(&rt), agent.clone(), chat.clone());
            tokio::spawn(async move { turn(&rt, &agent, &chat, &format!("writer {i}")).await })
        })
        .collect();
    for h in handles {
        let r = h.await.unwrap();
        assert!(r.is_success(), "{:?}", r.error);
    }
    let events = rt.session_events(&chat, None, 1000).await.unwrap().events;
    assert_eq!(events.len(), 128);
    for (i, pair) in events.chunks(2).enumerate() {
        assert_eq!((pair[0].seq, pair[1].seq), (2 * i as u64, 2 * i as u64 + 1));
        assert!(pair[0].message.text_content().starts_with("writer "));
        assert!(
            pair[1].message.text_content().starts_with("[simulated]"),
            "each reply right after its message"
        );
    }
    assert_eq!(rt.session(&chat).await.unwrap().unwrap().event_count, 128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_turns_on_one_session_stay_ordered_on_sqlite() {
    let db = TempDb::new();
    sixty_four_writers_on_one_session(Arc::new(SqliteStore::open(&db.path()).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_turns_on_one_session_stay_ordered_on_postgres() {
    let url = std::env::var("AETHER_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match PostgresStore::open(&url, 16).await {
        Ok(store) => sixty_four_writers_on_one_session(Arc::new(store)).await,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "no PostgreSQL server at {url}: {e} (CI is set: a test that needs this service fails instead of skipping)"
            );
            eprintln!("SKIPPED: no PostgreSQL server at {url}: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_to_sqlite_and_come_back() {
    let db = TempDb::new();
    let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&db.path()).await.unwrap());
    let cfg = RuntimeConfig {
        session_idle_ttl: Duration::from_secs(60),
        ..quiet_config()
    };
    let rt = runtime_on(Arc::clone(&store), cfg);
    let agent = create(&rt, config(&[])).await;
    turn(&rt, &agent, "idle", "hello").await;
    assert_eq!(rt.sweep_at(Instant::now()).await.sessions, 0, "not idle yet");
    let report = rt.sweep_at(Instant::now() + Duration::from_secs(61)).await;
    assert_eq!(report.sessions, 1);
    assert_eq!(
        store.get_session("idle").await.unwrap().unwrap().state,
        SessionState::Archived
    );
    let r = turn(&rt, &agent, "idle", "back").await;
    assert_eq!(meta(&r, "session.recovered"), &json!(true));
    assert_eq!(
        store.get_session("idle").await.unwrap().unwrap().state,
        SessionState::Active
    );
}

/// A store that counts the archive writes reaching it, and passes everything on.
struct CountingWrites {
    inner: Arc<dyn SessionStore>,
    one_by_one: AtomicU64,
    batches: AtomicU64,
}

#[async_trait::async_trait]
impl SessionStore for CountingWrites {
    fn info(&self) -> StoreInfo {
        self.inner.info()
    }
    async fn put_session(&self, record: SessionRecord) -> Result<(), StoreError> {
        self.inner.put_session(record).await
    }
    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.get_session(id).await
    }
    async fn append_events(&self, id: &str, events: &[Arc<SessionEvent>]) -> Result<(), StoreError> {
        self.inner.append_events(id, events).await
    }
    async fn load_window(&self, id: &str, max: usize) -> Result<HistoryWindow, StoreError> {
        self.inner.load_window(id, max).await
    }
    async fn events_page(&self, id: &str, after: Option<u64>, limit: usize) -> Result<EventPage, StoreError> {
        self.inner.events_page(id, after, limit).await
    }
    async fn list_sessions(&self, filter: &SessionFilter, page: &PageRequest) -> Result<Page, StoreError> {
        self.inner.list_sessions(filter, page).await
    }
    async fn set_state(&self, id: &str, state: SessionState) -> Result<bool, StoreError> {
        self.one_by_one.fetch_add(1, Ordering::Relaxed);
        self.inner.set_state(id, state).await
    }
    async fn archive_sessions(&self, ids: &[Arc<str>]) -> Result<u64, StoreError> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.inner.archive_sessions(ids).await
    }
    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_session(id).await
    }
    async fn purge_archived(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<u64, StoreError> {
        self.inner.purge_archived(cutoff).await
    }
    async fn session_count(&self) -> Result<u64, StoreError> {
        self.inner.session_count().await
    }
}

/// The soak's finding: archiving one session per SQLite commit fell behind the sessions
/// arriving. A sweep archives its idle sessions in batches of 1,024, one store write each, and
/// none of a busy session's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_archives_thousands_of_idle_sessions_in_a_few_batched_writes() {
    let db = TempDb::new();
    let counting = Arc::new(CountingWrites {
        inner: Arc::new(SqliteStore::open(&db.path()).await.unwrap()),
        one_by_one: AtomicU64::new(0),
        batches: AtomicU64::new(0),
    });
    let store: Arc<dyn SessionStore> = Arc::clone(&counting) as _;
    let cfg = RuntimeConfig {
        session_idle_ttl: Duration::from_secs(60),
        max_sessions_per_agent: 10_000,
        ..quiet_config()
    };
    let rt = Arc::new(runtime_on(Arc::clone(&store), cfg));
    let agent = create(&rt, config(&[])).await;
    const SESSIONS: usize = 2_100;
    let turns = (0..SESSIONS).map(|i| {
        let (rt, agent) = (Arc::clone(&rt), agent.clone());
        tokio::spawn(async move { turn(&rt, &agent, &format!("s{i}"), "hi").await.is_success() })
    });
    for ok in futures::future::join_all(turns).await {
        assert!(ok.unwrap());
    }
    let report = rt.sweep_at(Instant::now() + Duration::from_secs(61)).await;
    assert_eq!(report.sessions, SESSIONS as u64);
    assert_eq!(rt.stats().active_sessions, 0);
    assert_eq!(counting.one_by_one.load(Ordering::Relaxed), 0);
    assert_eq!(
        counting.batches.load(Ordering::Relaxed),
        3,
        "2,100 sessions = 1,024 + 1,024 + 52"
    );
    let archived = SessionFilter {
        state: Some(SessionState::Archived),
        ..SessionFilter::default()
    };
    let mut page = PageRequest {
        after: None,
        limit: 500,
    };
    let mut n = 0;
    loop {
        let p = store.list_sessions(&archived, &page).await.unwrap();
        n += p.sessions.len();
        match p.next_after {
            Some(a) => page.after = Some(a),
            None => break,
        }
    }
    assert_eq!(n, SESSIONS, "every session is archived in the file");
    let r = turn(&rt, &agent, "s7", "back").await;
    assert_eq!(meta(&r, "session.recovered"), &json!(true));
}

#[tokio::test(start_paused = true)]
async fn keep_alive_restarts_the_idle_clock() {
    let cfg = RuntimeConfig {
        session_idle_ttl: Duration::from_secs(60),
        ..quiet_config()
    };
    let rt = builder(0, 0).config(cfg).build().unwrap();
    let agent = create(&rt, config(&[])).await;
    turn(&rt, &agent, "idle", "hello").await;
    turn(&rt, &agent, "kept", "hello").await;
    tokio::time::advance(Duration::from_secs(45)).await;
    assert!(rt.keep_alive("kept"));
    assert!(!rt.keep_alive("never-seen"));
    let report = rt.sweep_at(Instant::now() + Duration::from_secs(20)).await;
    assert_eq!(report.sessions, 1, "only the session left idle for over 60 s");
    assert_eq!(rt.session("kept").await.unwrap().unwrap().state, SessionState::Active);
    assert_eq!(rt.session("idle").await.unwrap().unwrap().state, SessionState::Archived);
}

#[tokio::test]
async fn session_api_creates_lists_pages_expires_and_deletes() {
    let db = TempDb::new();
    let rt = runtime_on(Arc::new(SqliteStore::open(&db.path()).await.unwrap()), quiet_config());
    let a = create(&rt, config(&[])).await;
    let b = create(&rt, aether_contracts::AgentConfig::new("gpt-4o", "other")).await;
    let rec = rt.create_session("api-1", &a, Some("ada")).await.unwrap();
    assert_eq!(
        (rec.user_id.as_deref(), rec.agent_id.as_str(), rec.event_count),
        (Some("ada"), a.as_str(), 0)
    );
    rt.create_session("api-2", &a, Some("ada")).await.unwrap();
    rt.create_session("api-3", &b, Some("bob")).await.unwrap();
    assert!(rt.create_session("api-4", "agent-nope", None).await.is_err());
    assert_eq!(rt.stats().active_sessions, 3, "a failed creation leaves nothing behind");

    for i in 0..5 {
        turn(&rt, &a, "api-1", &format!("m{i}")).await;
    }
    let first = rt.session_events("api-1", None, 4).await.unwrap();
    assert_eq!(first.events.len(), 4);
    let rest = rt.session_events("api-1", first.next_after_seq, 100).await.unwrap();
    assert_eq!(rest.events.len(), 6);
    assert_eq!(rest.next_after_seq, None);

    let by_user = SessionFilter {
        user_id: Some("ada".into()),
        ..Default::default()
    };
    let ids: Vec<_> = rt
        .list_sessions(&by_user, &PageRequest::default())
        .await
        .unwrap()
        .sessions
        .into_iter()
        .map(|s| s.session_id.to_string())
        .collect();
    assert_eq!(ids, ["api-1", "api-2"]);
    let by_agent = SessionFilter {
        agent_id: Some(b.clone()),
        ..Default::default()
    };
    assert_eq!(
        rt.list_sessions(&by_agent, &PageRequest::default())
            .await
            .unwrap()
            .sessions
            .len(),
        1
    );

    assert!(rt.expire_session("api-2").await.unwrap());
    assert_eq!(
        rt.session("api-2").await.unwrap().unwrap().state,
        SessionState::Archived
    );
    assert!(rt.delete_session("api-1").await.unwrap());
    assert!(rt.session("api-1").await.unwrap().is_none());
    assert!(rt.session_events("api-1", None, 10).await.is_err());
    let r = turn(&rt, &a, "api-1", "again").await;
    assert_eq!(
        meta(&r, "session.created"),
        &json!(true),
        "deleted means gone: no resurrection"
    );
}
