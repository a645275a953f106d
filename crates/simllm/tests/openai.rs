//! The OpenAI-compatible provider against `aether sim-llm` over real HTTP on loopback.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{
    ContentPart, ImageReference, MessageContent, Metadata, TaskChunkType, TaskRequest, TaskResult, UniversalMessage,
};
use aether_runtime::live::LiveOptions;
use aether_runtime::model::openai::{OpenAiConfig, OpenAiProvider};
use aether_runtime::model::SimConfig;
use aether_runtime::Runtime;
use aether_simllm::{Fault, SimLlm, SimLlmConfig};
use base64::Engine as _;

async fn server(cfg: SimLlmConfig) -> (SimLlm, String) {
    let (sim, base) = common::serve(cfg).await;
    (sim, format!("{base}/v1"))
}

fn instant_sim() -> SimLlmConfig {
    common::instant()
}

fn runtime(cfg: OpenAiConfig) -> Runtime {
    common::runtime_with("openai", Arc::new(OpenAiProvider::new(cfg).unwrap()))
}

async fn agent(rt: &Runtime, tools: &[&str]) -> String {
    common::agent_for(rt, "gpt-4o-mini", tools).await
}

async fn turn(rt: &Runtime, agent: &str, session: &str, text: &str) -> TaskResult {
    rt.process(TaskRequest::converse(
        format!("t-{session}"),
        agent,
        session,
        vec![UniversalMessage::user(text)],
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tool_calling_streamed_and_image_turns_over_http() {
    let (sim, url) = server(instant_sim()).await;
    let rt = runtime(OpenAiConfig::new(&url));
    let a = agent(&rt, &["crm_lookup", "fx_quote"]).await;

    let r = turn(&rt, &a, "plain", "go").await;
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(r.tool_results.len(), 2, "tool calls came back over HTTP and ran here");
    assert!(r.tool_results.iter().all(|t| t.is_success()), "{:?}", r.tool_results);
    assert!(r.response_text().unwrap().contains("2 of 2 tool calls succeeded"));
    assert_eq!(r.metadata["provider"]["name"], "openai");
    assert!(r.metadata["provider"]["profile"]
        .as_str()
        .unwrap()
        .contains("simulated by aether sim-llm"));
    assert!(r.metadata["token_usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(sim.requests(), 2, "one call for the tools, one for the answer");

    // Streamed: deltas, and tool-call fragments reassembled by index.
    let mut live = rt
        .start_live(
            TaskRequest::converse("live", a.as_str(), "streamed", vec![UniversalMessage::user("go")]),
            LiveOptions::default(),
        )
        .unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = live.next_chunk().await {
        let end = c.is_final;
        chunks.push(c);
        if end {
            break;
        }
    }
    assert_eq!(
        chunks.last().unwrap().chunk_type,
        TaskChunkType::Complete,
        "{:?}",
        chunks.last()
    );
    let results: Vec<_> = chunks
        .iter()
        .filter(|c| c.chunk_type == TaskChunkType::ToolResult)
        .collect();
    assert_eq!(results.len(), 2);
    assert!(
        results.iter().all(|c| c.content["status"] == "success"),
        "arguments reassembled from fragments"
    );
    let deltas = chunks
        .iter()
        .filter(|c| c.chunk_type == TaskChunkType::Response && !c.is_final)
        .count();
    assert!(deltas > 3, "the answer streamed in pieces");

    // An image travels as a data URL and is acknowledged intact.
    let png = [&[0x89u8, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A][..], &[7u8; 500][..]].concat();
    let mut m = UniversalMessage::user("");
    m.content = MessageContent::Parts(vec![
        ContentPart::Text("what is this?".into()),
        ContentPart::ImageReference(ImageReference {
            image_path: format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&png)
            ),
            image_format: "png".into(),
            width: None,
            height: None,
            metadata: Metadata::new(),
        }),
    ]);
    let plain = agent(&rt, &[]).await;
    let r = rt
        .process(TaskRequest::converse("img", plain.as_str(), "image", vec![m]))
        .await;
    assert!(r.is_success(), "{:?}", r.error);
    let expect = format!(
        "image image/png 508 bytes #{}",
        aether_runtime::multimodal::short_hash(&png)
    );
    assert!(
        r.response_text().unwrap().contains(&expect),
        "{}",
        r.response_text().unwrap()
    );

    // A file reference has no part in the OpenAI protocol: it travels as text and is still acknowledged.
    let mut m = UniversalMessage::user("");
    m.content = MessageContent::Parts(vec![ContentPart::FileReference(aether_contracts::FileReference {
        file_path: "/data/statement.pdf".into(),
        file_type: "application/pdf".into(),
        file_size: Some(2048),
        encoding: "binary".into(),
        metadata: Metadata::new(),
    })]);
    let r = rt
        .process(TaskRequest::converse("file", plain.as_str(), "file", vec![m]))
        .await;
    assert!(r
        .response_text()
        .unwrap()
        .contains("file application/pdf 2048 bytes at /data/statement.pdf"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after() {
    let cfg = SimLlmConfig {
        sim: SimConfig {
            fixed_latency: Some(Duration::ZERO),
            ..SimConfig::default()
        },
        fault_sequence: vec![Some(Fault::RateLimit), Some(Fault::RateLimit)],
        retry_after_s: 0.1,
        ..SimLlmConfig::default()
    };
    let (sim, url) = server(cfg).await;
    let rt = runtime(OpenAiConfig {
        backoff_base: Duration::from_millis(1),
        ..OpenAiConfig::new(&url)
    });
    let a = agent(&rt, &[]).await;
    let started = std::time::Instant::now();
    let r = turn(&rt, &a, "retry", "hi").await;
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(sim.requests(), 3, "two 429s, then the answer");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "waited Retry-After twice: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_after_repeated_failures_and_closes_after_the_cooldown() {
    let cfg = SimLlmConfig {
        fault_sequence: vec![Some(Fault::ServerError); 3],
        ..instant_sim()
    };
    let (sim, url) = server(cfg).await;
    let provider = OpenAiConfig {
        max_retries: 0,
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_millis(300),
        ..OpenAiConfig::new(&url)
    };
    let rt = runtime(provider);
    let a = agent(&rt, &[]).await;
    for i in 0..3 {
        let r = turn(&rt, &a, &format!("c{i}"), "hi").await;
        let e = r.error.unwrap();
        assert_eq!(e.code.as_str(), "model.upstream");
        assert_eq!(e.details.unwrap()["status"], 500);
    }
    let r = turn(&rt, &a, "c3", "hi").await;
    assert!(r.error.unwrap().message.contains("circuit open"), "fails fast");
    assert_eq!(sim.requests(), 3, "the open circuit sent nothing");
    tokio::time::sleep(Duration::from_millis(350)).await; // let the cooldown pass
    let r = turn(&rt, &a, "c4", "hi").await;
    assert!(
        r.is_success(),
        "half-open: one call tries, succeeds, closes: {:?}",
        r.error
    );
    assert_eq!(sim.requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_is_a_clear_error_not_a_hang() {
    let cfg = SimLlmConfig {
        fault_sequence: vec![Some(Fault::DropMidStream), Some(Fault::DropMidStream)],
        ..instant_sim()
    };
    let (_sim, url) = server(cfg).await;
    let rt = runtime(OpenAiConfig {
        max_retries: 0,
        ..OpenAiConfig::new(&url)
    });
    let a = agent(&rt, &[]).await;
    let mut live = rt
        .start_live(
            TaskRequest::converse("drop", a.as_str(), "drop", vec![UniversalMessage::user("tell me")]),
            LiveOptions::default(),
        )
        .unwrap();
    let last = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let c = live.next_chunk().await.expect("a final chunk");
            if c.is_final {
                return c;
            }
        }
    })
    .await
    .expect("no hang");
    assert_eq!(last.chunk_type, TaskChunkType::Error);
    assert_eq!(last.content["code"], "model.upstream");
    let msg = last.content["message"].as_str().unwrap();
    assert!(msg.contains("broke off") || msg.contains("before [DONE]"), "{msg}");

    let r = tokio::time::timeout(Duration::from_secs(10), turn(&rt, &a, "drop-sync", "hi"))
        .await
        .expect("no hang");
    assert_eq!(r.error.unwrap().code.as_str(), "model.upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_url_or_key_is_a_clear_error() {
    let rt = runtime(OpenAiConfig {
        max_retries: 0,
        ..OpenAiConfig::new("http://127.0.0.1:1/v1")
    });
    let a = agent(&rt, &[]).await;
    let e = turn(&rt, &a, "url", "hi").await.error.unwrap();
    assert_eq!(e.code.as_str(), "model.upstream");
    assert!(
        e.message
            .contains("cannot connect to http://127.0.0.1:1/v1/chat/completions: "),
        "{}",
        e.message
    );
    // The cause once, the address once: no "cannot connect to" said twice.
    assert_eq!(e.message.matches("cannot connect").count(), 1, "{}", e.message);
    assert_eq!(e.message.matches("refused").count(), 1, "{}", e.message);

    let (_sim, url) = server(SimLlmConfig {
        api_key: Some("right".into()),
        ..instant_sim()
    })
    .await;
    let rt = runtime(OpenAiConfig {
        api_key: Some("wrong".into()),
        ..OpenAiConfig::new(&url)
    });
    let a = agent(&rt, &[]).await;
    let e = turn(&rt, &a, "key", "hi").await.error.unwrap();
    assert!(
        e.message.contains("401") && e.message.contains("invalid API key"),
        "{}",
        e.message
    );
    let rt = runtime(OpenAiConfig {
        api_key: Some("right".into()),
        ..OpenAiConfig::new(&url)
    });
    let a = agent(&rt, &[]).await;
    assert!(turn(&rt, &a, "key2", "hi").await.is_success());
}
