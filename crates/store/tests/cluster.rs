//! The cluster directory on the real PostgreSQL: its tables come from the store's versioned
//! migrations, and the migration adopts the tables (and rows) that earlier versions created
//! outside the migrations.

use std::time::Duration;

use aether_contracts::AgentConfig;
use aether_store::{ClusterDirectory, PgClusterDirectory, PostgresStore};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

fn pg_url() -> String {
    std::env::var("AETHER_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

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
                assert!(
                    std::env::var_os("CI").is_none(),
                    "no PostgreSQL server at {}: {e} (CI is set: a test that needs this service fails instead of skipping)",
                    pg_url()
                );
                eprintln!("SKIPPED: no PostgreSQL server at {}: {e}", pg_url());
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
    assert_eq!(versions, vec![1, 2], "migration 2 recorded on top of 1");
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
