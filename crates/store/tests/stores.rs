//! The same behaviour from every store: memory, a real SQLite file, the real PostgreSQL.
//! PostgreSQL is at `AETHER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! its tests print why and skip only when no server answers there.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use aether_contracts::UniversalMessage;
use aether_store::*;
use chrono::{Duration as ChronoDuration, Utc};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(&format!("aether-store-{name}")));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pg_url() -> String {
    std::env::var("AETHER_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// PostgreSQL did not answer: with `CI` set the test fails; elsewhere it says SKIPPED.
fn no_postgres(e: &dyn std::fmt::Display) {
    assert!(
        std::env::var_os("CI").is_none(),
        "no PostgreSQL server at {}: {e} (CI is set: a test that needs this service fails instead of skipping)",
        pg_url()
    );
    eprintln!("SKIPPED: no PostgreSQL server at {}: {e}", pg_url());
}

async fn postgres() -> Option<Arc<dyn SessionStore>> {
    match PostgresStore::open(&pg_url(), 16).await {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            no_postgres(&e);
            None
        }
    }
}

async fn sqlite(name: &str) -> (Arc<dyn SessionStore>, PathBuf) {
    let path = scratch_dir(name).join("sessions.db");
    (Arc::new(SqliteStore::open(&path).await.unwrap()), path)
}

fn record(id: &str, user: &str, agent: &str) -> SessionRecord {
    let now = Utc::now();
    SessionRecord {
        session_id: id.into(),
        user_id: Some(user.into()),
        agent_id: agent.into(),
        internal_session_id: format!("ses-{id}"),
        state: SessionState::Active,
        created_at: now,
        updated_at: now,
        event_count: 0,
    }
}

fn event(seq: u64, text: &str) -> Arc<SessionEvent> {
    Arc::new(SessionEvent::new(
        seq,
        Arc::from("ses"),
        Arc::from("agent"),
        UniversalMessage::user(text),
        vec![],
    ))
}

async fn append(store: &dyn SessionStore, id: &str, from: u64, n: u64) {
    let events: Vec<_> = (from..from + n).map(|s| event(s, &format!("m{s}"))).collect();
    store.append_events(id, &events).await.unwrap();
}

/// CRUD, paging, listing, state, delete-is-final, purge and sequence checks. A store in `async`
/// mode cannot refuse a bad append to its caller (it is written later), so `sync` gates those checks.
async fn conformance(store: Arc<dyn SessionStore>, sync: bool) {
    let run = unique("conf");
    let (user, agent) = (format!("{run}-user"), format!("{run}-agent"));
    let id = format!("{run}-a");

    // Create, read, update.
    store.put_session(record(&id, &user, &agent)).await.unwrap();
    let got = store.get_session(&id).await.unwrap().unwrap();
    assert_eq!((got.user_id.as_deref(), got.event_count), (Some(user.as_str()), 0));
    let mut switched = record(&id, &user, &format!("{agent}-2"));
    switched.created_at = got.created_at;
    store.put_session(switched).await.unwrap();
    assert_eq!(
        store.get_session(&id).await.unwrap().unwrap().agent_id,
        format!("{agent}-2")
    );
    assert!(store.get_session(&format!("{run}-none")).await.unwrap().is_none());

    // Appends, windows and paging.
    append(store.as_ref(), &id, 0, 10).await;
    append(store.as_ref(), &id, 10, 15).await;
    let rec = store.get_session(&id).await.unwrap().unwrap();
    assert_eq!(rec.event_count, 25, "updating the record never rewrites the count");
    let w = store.load_window(&id, 8).await.unwrap();
    assert_eq!(
        w.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (17..25).collect::<Vec<_>>()
    );
    assert_eq!(w.events_before, 17);
    assert_eq!(w.events[0].message.text_content(), "m17");
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.events_page(&id, after, 7).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.seq));
        match page.next_after_seq {
            Some(s) => after = Some(s),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..25).collect::<Vec<_>>(),
        "paging visits every event once, in order"
    );

    // Sequence checks: a gap or a replay is refused and changes nothing.
    if sync {
        let gap = store.append_events(&id, &[event(30, "x")]).await.unwrap_err();
        assert!(
            matches!(
                gap,
                StoreError::SequenceGap {
                    expected: 25,
                    got: 30,
                    ..
                }
            ),
            "{gap}"
        );
        let replay = store.append_events(&id, &[event(3, "x")]).await.unwrap_err();
        assert!(matches!(replay, StoreError::SequenceGap { .. }), "{replay}");
        assert_eq!(store.get_session(&id).await.unwrap().unwrap().event_count, 25);
        let missing = store
            .append_events(&format!("{run}-none"), &[event(0, "x")])
            .await
            .unwrap_err();
        assert!(matches!(missing, StoreError::SessionNotFound(_)), "{missing}");
    }

    // Listing by user and by agent, paged.
    for i in 0..5 {
        store
            .put_session(record(&format!("{run}-u{i}"), &user, &agent))
            .await
            .unwrap();
    }
    let by_user = SessionFilter {
        user_id: Some(user.clone()),
        ..SessionFilter::default()
    };
    let mut ids = Vec::new();
    let mut page = PageRequest { after: None, limit: 2 };
    loop {
        let p = store.list_sessions(&by_user, &page).await.unwrap();
        ids.extend(p.sessions.iter().map(|s| s.session_id.clone()));
        match p.next_after {
            Some(a) => page.after = Some(a),
            None => break,
        }
    }
    assert_eq!(ids.len(), 6);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id");
    let by_agent = SessionFilter {
        agent_id: Some(agent.clone()),
        ..SessionFilter::default()
    };
    assert_eq!(
        store
            .list_sessions(&by_agent, &PageRequest::default())
            .await
            .unwrap()
            .sessions
            .len(),
        5
    );

    // Archive, then purge only what is archived and old enough. A shared database (PostgreSQL,
    // CI's too) keeps what earlier runs archived: purge that first, so "nothing is old enough"
    // below speaks of this run alone.
    store
        .purge_archived(Utc::now() - ChronoDuration::hours(1))
        .await
        .unwrap();
    assert!(store
        .set_state(&format!("{run}-u0"), SessionState::Archived)
        .await
        .unwrap());
    assert!(!store
        .set_state(&format!("{run}-none"), SessionState::Archived)
        .await
        .unwrap());
    let archived = SessionFilter {
        user_id: Some(user.clone()),
        state: Some(SessionState::Archived),
        ..SessionFilter::default()
    };
    assert_eq!(
        store
            .list_sessions(&archived, &PageRequest::default())
            .await
            .unwrap()
            .sessions
            .len(),
        1
    );
    assert_eq!(
        store
            .purge_archived(Utc::now() - ChronoDuration::hours(1))
            .await
            .unwrap(),
        0,
        "too recent"
    );
    assert!(
        store
            .purge_archived(Utc::now() + ChronoDuration::seconds(1))
            .await
            .unwrap()
            >= 1
    );
    assert!(store.get_session(&format!("{run}-u0")).await.unwrap().is_none());

    // The sweeper's batch: the existing ones are archived in one call, the rest left alone;
    // unknown ids (one that needs escaping among them) are skipped, not errors.
    let batch: Vec<Arc<str>> = [
        format!("{run}-u1"),
        format!("{run}-u3"),
        format!("{run}-none"),
        format!("{run}-\"quote\"'"),
    ]
    .into_iter()
    .map(Arc::from)
    .collect();
    assert_eq!(store.archive_sessions(&batch).await.unwrap(), 2);
    assert_eq!(store.archive_sessions(&[]).await.unwrap(), 0);
    let state = |i: usize| {
        let store = Arc::clone(&store);
        let id = format!("{run}-u{i}");
        async move { store.get_session(&id).await.unwrap().unwrap().state }
    };
    assert_eq!(state(1).await, SessionState::Archived);
    assert_eq!(state(3).await, SessionState::Archived);
    assert_eq!(state(2).await, SessionState::Active);
    assert_eq!(state(4).await, SessionState::Active);

    // Delete is final: the record and every event are gone; nothing comes back.
    assert!(store.delete_session(&id).await.unwrap());
    assert!(!store.delete_session(&id).await.unwrap());
    assert!(store.get_session(&id).await.unwrap().is_none());
    assert!(store.load_window(&id, 100).await.unwrap().events.is_empty());
    assert!(matches!(
        store.events_page(&id, None, 10).await,
        Err(StoreError::SessionNotFound(_))
    ));
    store.put_session(record(&id, &user, &agent)).await.unwrap();
    assert_eq!(
        store.get_session(&id).await.unwrap().unwrap().event_count,
        0,
        "a new session with the old id starts empty"
    );
    assert!(store.load_window(&id, 100).await.unwrap().events.is_empty());
}

/// 64 writers on one session (each retrying on a lost race) and 1,000 sessions at once. The
/// optimistic writers need the store to refuse a lost race at once (`sync`).
async fn concurrency(store: Arc<dyn SessionStore>, sync: bool) {
    let run = unique("conc");
    if sync {
        let hot = format!("{run}-hot");
        store.put_session(record(&hot, "u", "a")).await.unwrap();
        let writers: Vec<_> = (0..64)
            .map(|w| {
                let (store, hot) = (Arc::clone(&store), hot.clone());
                tokio::spawn(async move {
                    for k in 0..5 {
                        loop {
                            let next = store.get_session(&hot).await.unwrap().unwrap().event_count;
                            let e = Arc::new(SessionEvent::new(
                                next,
                                Arc::from("s"),
                                Arc::from("a"),
                                UniversalMessage::user(format!("w{w}-{k}")),
                                vec![],
                            ));
                            match store.append_events(&hot, &[e]).await {
                                Ok(()) => break,
                                Err(StoreError::SequenceGap { .. }) => continue,
                                Err(e) => panic!("writer {w}: {e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let page = store.events_page(&hot, None, 1000).await.unwrap();
        assert_eq!(page.events.len(), 320);
        assert!(
            page.events.iter().enumerate().all(|(i, e)| e.seq == i as u64),
            "contiguous and ordered"
        );
        for w in 0..64 {
            let mine: Vec<String> = page
                .events
                .iter()
                .map(|e| e.message.text_content().into_owned())
                .filter(|t| t.starts_with(&format!("w{w}-")))
                .collect();
            let expected: Vec<String> = (0..5).map(|k| format!("w{w}-{k}")).collect();
            assert_eq!(mine, expected, "writer {w}'s events in its own order");
        }
    }

    let many: Vec<_> = (0..1000)
        .map(|i| {
            let (store, id, user) = (Arc::clone(&store), format!("{run}-s{i:04}"), format!("{run}-many"));
            tokio::spawn(async move {
                store.put_session(record(&id, &user, "a")).await.unwrap();
                append(store.as_ref(), &id, 0, 2).await;
                append(store.as_ref(), &id, 2, 2).await;
            })
        })
        .collect();
    for t in many {
        t.await.unwrap();
    }
    let filter = SessionFilter {
        user_id: Some(format!("{run}-many")),
        ..SessionFilter::default()
    };
    let all = store
        .list_sessions(
            &filter,
            &PageRequest {
                after: None,
                limit: 2000,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.sessions.len(), 1000);
    assert!(all.sessions.iter().all(|s| s.event_count == 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    conformance(Arc::clone(&store), true).await;
    concurrency(store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_conforms() {
    let (store, path) = sqlite("conform").await;
    assert_eq!(store.info().kind, "sqlite");
    conformance(Arc::clone(&store), true).await;
    concurrency(store, true).await;
    assert!(path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_conforms() {
    let Some(store) = postgres().await else {
        return;
    };
    assert_eq!(store.info().kind, "postgres");
    assert!(
        !store.info().location.unwrap().contains('@'),
        "no credentials in the location"
    );
    conformance(Arc::clone(&store), true).await;
    concurrency(store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_writes_conform_and_flush() {
    let (inner, _) = sqlite("async").await;
    let store: Arc<dyn SessionStore> = Arc::new(BackgroundWrites::new(inner, 64));
    assert_eq!(store.info().durability, Durability::Async);
    conformance(Arc::clone(&store), false).await;
    concurrency(Arc::clone(&store), false).await;
    let id = unique("flush");
    store.put_session(record(&id, "u", "a")).await.unwrap();
    append(store.as_ref(), &id, 0, 3).await;
    store.flush().await.unwrap();
    assert_eq!(store.get_session(&id).await.unwrap().unwrap().event_count, 3);
}

/// Two stores on one file behave like two processes: separate connections and locks. Neither
/// may ever surface "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_on_one_sqlite_file_never_see_database_is_locked() {
    let path = scratch_dir("locked").join("shared.db");
    let a: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tokio::spawn(async move {
                let id = format!("lock-{i}");
                store.put_session(record(&id, "u", "a")).await?;
                for k in 0..5 {
                    store.append_events(&id, &[event(k, "x")]).await?;
                    store.load_window(&id, 4).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    let mut errors = HashSet::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            errors.insert(e.to_string());
        }
    }
    assert!(errors.is_empty(), "errors under contention: {errors:?}");
    assert_eq!(a.session_count().await.unwrap(), 200);
}

#[tokio::test]
async fn sqlite_reopens_with_its_data_and_refuses_bad_paths() {
    let dir = scratch_dir("reopen");
    let path = dir.join("nested/deeper/sessions.db");
    {
        let s = SqliteStore::open(&path).await.unwrap();
        s.put_session(record("keep", "u", "a")).await.unwrap();
        append(&s, "keep", 0, 3).await;
    }
    let s = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        s.get_session("keep").await.unwrap().unwrap().event_count,
        3,
        "migrations ran once; data kept"
    );

    let corrupt = dir.join("corrupt.db");
    std::fs::write(
        &corrupt,
        b"this is not a database, just some bytes that are long enough to matter..........",
    )
    .unwrap();
    let e = SqliteStore::open(&corrupt).await.err().unwrap().to_string();
    assert!(
        e.contains(&corrupt.display().to_string()) && e.contains("not a database"),
        "{e}"
    );

    let blocker = dir.join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let under_file = blocker.join("sessions.db");
    let e = SqliteStore::open(&under_file).await.err().unwrap().to_string();
    assert!(e.contains(&under_file.display().to_string()), "{e}");
}

#[tokio::test]
async fn a_wrong_postgres_url_names_the_host() {
    let e = PostgresStore::open("postgres://postgres@127.0.0.1:1/test", 1)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("127.0.0.1:1/test"), "{e}");
    let e = PostgresStore::open("mysql://nope", 1).await.err().unwrap().to_string();
    assert!(e.contains("invalid URL"), "{e}");
}

/// Processes that open a new file at the same moment race to migrate it; all must succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_openers_of_a_new_sqlite_file_all_succeed() {
    let path = scratch_dir("race").join("new.db");
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(&path).await.map(|_| ()) })
        })
        .collect();
    for o in openers {
        o.await.unwrap().unwrap();
    }
}

mod cluster_directory {
    //! The cluster directory on the real PostgreSQL: its tables come from the store's versioned
    //! migrations, and the migration adopts the tables (and rows) that earlier versions created
    //! outside the migrations.

    use std::time::Duration;

    use aether_contracts::AgentConfig;
    use aether_store::{ClusterDirectory, PgClusterDirectory, PostgresStore};
    use sqlx::postgres::PgPoolOptions;
    use sqlx::PgPool;

    use super::pg_url;

    /// A fresh database for one test, dropped by [`Scratch::drop_db`].
    struct Scratch {
        admin: PgPool,
        name: String,
        url: String,
    }

    impl Scratch {
        async fn new(tag: &str) -> Option<Self> {
            let admin = match PgPoolOptions::new().max_connections(1).connect(&pg_url()).await {
                Ok(p) => p,
                Err(e) => {
                    super::no_postgres(&e);
                    return None;
                }
            };
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let name = format!("aether_{tag}_{}_{nanos:x}", std::process::id());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .unwrap();
            let base = pg_url();
            let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
            Some(Self { admin, name, url })
        }

        async fn drop_db(self) {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&self.admin)
                .await
                .unwrap();
        }
    }

    fn config() -> AgentConfig {
        AgentConfig::new("gpt-4o-mini", "Be brief.").with_tools(["crm_lookup"])
    }

    #[tokio::test]
    async fn the_migration_adopts_the_tables_an_earlier_version_made_outside_the_migrations() {
        let Some(db) = Scratch::new("adopt").await else {
            return;
        };
        // What the release before this migration left: migration 1 applied by the store, and the
        // cluster's tables created by the server itself, with their rows.
        let old = PgPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap();
        aether_store::migrate_postgres_up_to(&old, 1).await.unwrap();
        for sql in [
            "CREATE TABLE IF NOT EXISTS aether_agents (agent_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, \
             config JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            "CREATE TABLE IF NOT EXISTS aether_live_turns (task_key TEXT PRIMARY KEY, instance TEXT NOT NULL, \
             started_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            "CREATE TABLE IF NOT EXISTS aether_instances (instance TEXT PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL)",
        ] {
            sqlx::query(sql).execute(&old).await.unwrap();
        }
        sqlx::query("INSERT INTO aether_agents (agent_id, tenant, config) VALUES ('agent-old', 'acme', $1::jsonb)")
            .bind(serde_json::to_string(&config()).unwrap())
            .execute(&old)
            .await
            .unwrap();
        sqlx::query("INSERT INTO aether_live_turns (task_key, instance) VALUES ('acme:t1', 'i-old')")
            .execute(&old)
            .await
            .unwrap();
        old.close().await;

        let dir = PgClusterDirectory::open(&db.url, 2).await.unwrap();
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(dir.pool())
            .await
            .unwrap();
        assert_eq!(versions, vec![1, 2, 3], "migrations 2 and 3 recorded on top of 1");
        assert_eq!(
            dir.get_agent("agent-old", "acme").await.unwrap(),
            Some(config()),
            "rows kept"
        );
        assert_eq!(
            dir.get_agent("agent-old", "globex").await.unwrap(),
            None,
            "another tenant's"
        );
        assert_eq!(dir.agent_ids("acme").await.unwrap(), vec!["agent-old".to_owned()]);
        let owner = dir
            .live_owner("acme:t1", Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (owner.instance.as_str(), owner.alive),
            ("i-old", false),
            "never beat: not alive"
        );

        // Opening again, and the session store on the same database, change nothing.
        drop(PgClusterDirectory::open(&db.url, 1).await.unwrap());
        drop(PostgresStore::open(&db.url, 1).await.unwrap());
        assert_eq!(dir.agent_ids("acme").await.unwrap().len(), 1);
        dir.pool().close().await;
        db.drop_db().await;
    }

    #[tokio::test]
    async fn a_session_lease_has_one_holder_is_taken_over_when_it_lapses_and_fences_a_late_release() {
        use aether_store::{LeaseHolder, SessionStore};
        let Some(db) = Scratch::new("lease").await else {
            return;
        };
        let store = PostgresStore::open(&db.url, 2).await.unwrap();
        let leases = store.leases().expect("a shared store has leases");
        let ttl = Duration::from_secs(60);
        let a1 = LeaseHolder {
            instance: "i-a".into(),
            token: 1,
        };
        let a2 = LeaseHolder {
            instance: "i-a".into(),
            token: 2,
        };
        let b1 = LeaseHolder {
            instance: "i-b".into(),
            token: 1,
        };
        assert!(leases.try_acquire("s", &a1, ttl).await.unwrap(), "free");
        assert!(
            !leases.try_acquire("s", &b1, ttl).await.unwrap(),
            "held by another instance"
        );
        assert!(
            leases.try_acquire("other", &b1, ttl).await.unwrap(),
            "sessions are independent"
        );
        assert!(leases.renew("s", &a1, ttl).await.unwrap());
        assert!(!leases.renew("s", &b1, ttl).await.unwrap(), "not b's to renew");

        // The next turn of the same instance takes over at once; the first turn's late release
        // and renewal no longer touch it.
        assert!(leases.try_acquire("s", &a2, ttl).await.unwrap());
        leases.release("s", &a1).await.unwrap();
        assert!(!leases.renew("s", &a1, ttl).await.unwrap());
        assert!(
            !leases.try_acquire("s", &b1, ttl).await.unwrap(),
            "a's second turn still holds it"
        );

        // a died: its lease lapses (its expiry passes), and b takes it.
        let pool = PgPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap();
        sqlx::query("UPDATE aether_session_leases SET expires_at = now() - interval '1 second' WHERE session_id = 's'")
            .execute(&pool)
            .await
            .unwrap();
        assert!(leases.try_acquire("s", &b1, ttl).await.unwrap(), "lapsed");
        assert!(!leases.renew("s", &a2, ttl).await.unwrap(), "a's lease is gone");
        leases.release("s", &b1).await.unwrap();
        assert!(leases.try_acquire("s", &a1, ttl).await.unwrap(), "released");
        pool.close().await;
        drop(leases);
        drop(store);
        db.drop_db().await;
    }

    #[tokio::test]
    async fn a_new_database_gets_the_tables_and_the_directory_works() {
        let Some(db) = Scratch::new("fresh").await else {
            return;
        };
        let dir = PgClusterDirectory::open(&db.url, 2).await.unwrap();
        dir.put_agent("a1", "acme", &config()).await.unwrap();
        let mut other = config();
        other.system_prompt = "Something else.".into();
        dir.put_agent("a1", "acme", &other).await.unwrap();
        assert_eq!(
            dir.get_agent("a1", "acme").await.unwrap(),
            Some(config()),
            "the first record wins"
        );

        dir.claim_live("acme:t", "i1").await.unwrap();
        let owner = dir
            .live_owner("acme:t", Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert!(!owner.alive, "no heartbeat yet");
        dir.beat("i1").await.unwrap();
        assert!(
            dir.live_owner("acme:t", Duration::from_secs(10))
                .await
                .unwrap()
                .unwrap()
                .alive
        );
        dir.release_live("acme:t", "i2").await.unwrap();
        assert!(
            dir.live_owner("acme:t", Duration::from_secs(10))
                .await
                .unwrap()
                .is_some(),
            "not i2's to release"
        );
        dir.release_live("acme:t", "i1").await.unwrap();
        assert_eq!(dir.live_owner("acme:t", Duration::from_secs(10)).await.unwrap(), None);

        assert!(dir.delete_agent("a1", "acme").await.unwrap());
        assert!(!dir.delete_agent("a1", "acme").await.unwrap());
        dir.notify("aether_test_channel", "hello").await.unwrap();

        let e = PgClusterDirectory::open("mysql://nope", 1).await.err().unwrap();
        assert!(e.to_string().contains("postgres://"), "{e}");
        dir.pool().close().await;
        db.drop_db().await;
    }
}
