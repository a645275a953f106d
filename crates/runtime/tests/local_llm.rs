//! The `local` provider with a real GGUF model (SmolLM2-135M-Instruct), through the runtime's public API.
//! Needs `--features local-llm` and the model file: `scripts/fetch-test-model.sh` puts it where
//! [`model_path`] looks (`.ci/run` does this). Checks the shape of replies, never their wording.
#![cfg(feature = "local-llm")]

use std::path::PathBuf;
use std::sync::Arc;

use aether_contracts::{AgentConfig, ChunkKind, TaskChunkType, TaskRequest, UniversalMessage};
use aether_runtime::live::LiveOptions;
use aether_runtime::model::local::{LocalConfig, LocalLoadError, LocalProvider};
use aether_runtime::model::ModelProvider;
use aether_runtime::{Runtime, RuntimeConfig};

/// `AETHER_TEST_GGUF`, else the cache that `scripts/fetch-test-model.sh` fills.
fn model_path() -> PathBuf {
    let path = aether_runtime::model::local::fetched_test_model();
    assert!(
        path.is_file(),
        "the test model `{}` is missing: run scripts/fetch-test-model.sh (or set AETHER_TEST_GGUF)",
        path.display()
    );
    path
}

fn provider(slots: usize) -> Arc<LocalProvider> {
    let mut cfg = LocalConfig::new(model_path());
    cfg.slots = slots;
    cfg.context_per_slot = 1024;
    Arc::new(LocalProvider::load(cfg).expect("load the GGUF model"))
}

fn runtime(p: Arc<LocalProvider>) -> Runtime {
    Runtime::builder()
        .config(RuntimeConfig {
            sweep_interval: None,
            ..RuntimeConfig::default()
        })
        .provider("local", p as Arc<dyn ModelProvider>)
        .default_provider("local")
        .build()
        .unwrap()
}

async fn agent(rt: &Runtime, max_tokens: u32) -> String {
    let mut config = AgentConfig::new("smollm2", "You are a helpful assistant. Answer in one sentence.");
    config.model_config.max_tokens = Some(max_tokens);
    config.model_config.temperature = Some(0.0);
    rt.create_agent(config).await.unwrap().agent_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generates_streams_and_serves_four_at_once() {
    let rt = Arc::new(runtime(provider(4)));
    let a = agent(&rt, 24).await;

    // A plain turn: real text, token accounting, provider named and not simulated.
    let r = rt
        .process(TaskRequest::converse(
            "t1",
            a.as_str(),
            "s1",
            vec![UniversalMessage::user("What is the capital of France?")],
        ))
        .await;
    assert!(r.is_success(), "{:?}", r.error);
    let text = r.response_text().unwrap().into_owned();
    assert!(text.chars().any(char::is_alphabetic), "an answer with words: {text:?}");
    let usage = &r.metadata["token_usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 10, "{usage}");
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=24).contains(&completion), "max_tokens bounds the answer: {usage}");
    assert_eq!(r.metadata["provider"]["name"], "local");

    // The same session continues: the history reaches the model (the prompt grows).
    let r2 = rt
        .process(TaskRequest::converse(
            "t2",
            a.as_str(),
            "s1",
            vec![UniversalMessage::user("And of Italy?")],
        ))
        .await;
    assert!(r2.is_success(), "{:?}", r2.error);
    assert!(
        r2.metadata["token_usage"]["prompt_tokens"].as_u64() > usage["prompt_tokens"].as_u64(),
        "the second turn's prompt holds the first"
    );

    // Streamed: several response deltas whose concatenation is the final answer.
    let mut live = rt
        .start_live(
            TaskRequest::converse(
                "live",
                a.as_str(),
                "s2",
                vec![UniversalMessage::user("Name three colours.")],
            ),
            LiveOptions::default(),
        )
        .unwrap();
    let (mut deltas, mut streamed, mut final_text) = (0, String::new(), None);
    while let Some(c) = live.next_chunk().await {
        match c.chunk_kind {
            Some(ChunkKind::ResponseDelta) => {
                deltas += 1;
                streamed.push_str(c.content.as_str().unwrap());
            }
            Some(ChunkKind::ResponseFinal) => final_text = Some(c.content.as_str().unwrap().to_owned()),
            _ => {}
        }
        assert_ne!(c.chunk_type, TaskChunkType::Error, "{:?}", c.content);
        if c.is_final {
            break;
        }
    }
    assert!(deltas >= 3, "tokens arrive one by one, got {deltas} deltas");
    assert_eq!(final_text.as_deref(), Some(streamed.as_str()));

    // Four sessions at once share the engine (continuous batching): all answer.
    let turns = (0..4).map(|i| {
        let rt = rt.clone();
        let a = a.clone();
        tokio::spawn(async move {
            rt.process(TaskRequest::converse(
                format!("c{i}"),
                a.as_str(),
                format!("c{i}"),
                vec![UniversalMessage::user(format!("Count to {}.", i + 3))],
            ))
            .await
        })
    });
    for t in futures::future::join_all(turns).await {
        let r = t.unwrap();
        assert!(r.is_success(), "{:?}", r.error);
        assert!(!r.response_text().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_turn_frees_its_slot() {
    // One slot: if the cancelled turn kept it, the next turn would wait for all its 400 tokens.
    let p = provider(1);
    let rt = runtime(p.clone());
    let a = agent(&rt, 400).await;
    let mut live = rt
        .start_live(
            TaskRequest::converse(
                "long",
                a.as_str(),
                "long",
                vec![UniversalMessage::user("Write a long story.")],
            ),
            LiveOptions::default(),
        )
        .unwrap();
    while let Some(c) = live.next_chunk().await {
        if c.chunk_kind == Some(ChunkKind::ResponseDelta) {
            break; // the model is generating
        }
    }
    live.cancel();
    drop(live);
    let short = agent(&rt, 4).await;
    let r = rt
        .process(TaskRequest::converse(
            "next",
            short.as_str(),
            "next",
            vec![UniversalMessage::user("Hi")],
        ))
        .await;
    assert!(r.is_success(), "{:?}", r.error);
    assert!(r.metadata["token_usage"]["completion_tokens"].as_u64().unwrap() <= 4);
    assert_eq!(p.queue_depth(), 0);
}

#[test]
fn a_missing_or_broken_model_file_is_a_clear_error() {
    let missing = LocalProvider::load(LocalConfig::new("/nonexistent/model.gguf"))
        .err()
        .unwrap();
    assert!(matches!(missing, LocalLoadError::Missing(_)));
    assert!(missing.to_string().contains("/nonexistent/model.gguf"), "{missing}");

    let dir = std::env::temp_dir().join(format!("aether-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bogus = dir.join("not-a-model.gguf");
    std::fs::write(&bogus, b"this is not GGUF").unwrap();
    let err = LocalProvider::load(LocalConfig::new(&bogus)).err().unwrap();
    assert!(matches!(err, LocalLoadError::Load { .. }), "{err}");
    assert!(err.to_string().contains("not-a-model.gguf"), "{err}");

    let mut cfg = LocalConfig::new(model_path());
    cfg.slots = 0;
    let err = LocalProvider::load(cfg).err().unwrap();
    assert!(err.to_string().contains("slots"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
