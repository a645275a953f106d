//! The Gemini provider against `aether sim-llm`'s Gemini route over real HTTP on loopback.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{
    ContentPart, ImageReference, MessageContent, Metadata, TaskChunkType, TaskRequest, UniversalMessage,
};
use aether_runtime::live::LiveOptions;
use aether_runtime::model::gemini::{GeminiConfig, GeminiProvider};
use aether_runtime::model::SimConfig;
use aether_runtime::Runtime;
use aether_simllm::{Fault, SimLlm, SimLlmConfig};
use base64::Engine as _;

async fn server(cfg: SimLlmConfig) -> (SimLlm, String) {
    let (sim, base) = common::serve(cfg).await;
    (sim, format!("{base}/v1beta"))
}

fn instant() -> SimLlmConfig {
    common::instant()
}

fn runtime(cfg: GeminiConfig) -> Runtime {
    common::runtime_with("gemini", Arc::new(GeminiProvider::new(cfg).unwrap()))
}

async fn agent(rt: &Runtime, tools: &[&str]) -> String {
    common::agent_for(rt, "gemini-1.5-flash", tools).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_streaming_and_images_over_gemini_format() {
    let (sim, url) = server(instant()).await;
    let rt = runtime(GeminiConfig::new(&url));
    let a = agent(&rt, &["crm_lookup", "aml_checker"]).await;
    let r = rt
        .process(TaskRequest::converse(
            "g1",
            a.as_str(),
            "g-plain",
            vec![UniversalMessage::user("go")],
        ))
        .await;
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(r.tool_results.len(), 2);
    assert!(r.tool_results.iter().all(|t| t.is_success()), "{:?}", r.tool_results);
    assert_eq!(r.metadata["provider"]["name"], "gemini");
    assert!(r.metadata["provider"]["profile"]
        .as_str()
        .unwrap()
        .contains("simulated by aether sim-llm"));
    assert!(r.metadata["token_usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(sim.requests(), 2);

    let mut live = rt
        .start_live(
            TaskRequest::converse("g2", a.as_str(), "g-live", vec![UniversalMessage::user("go")]),
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
    assert!(
        chunks
            .iter()
            .filter(|c| c.chunk_type == TaskChunkType::Response && !c.is_final)
            .count()
            > 3
    );

    let gif = [&b"GIF89a"[..], &[3u8; 200][..]].concat();
    let mut m = UniversalMessage::user("");
    m.content = MessageContent::Parts(vec![ContentPart::ImageReference(ImageReference {
        image_path: base64::engine::general_purpose::STANDARD.encode(&gif),
        image_format: "gif".into(),
        width: None,
        height: None,
        metadata: Metadata::new(),
    })]);
    let plain = agent(&rt, &[]).await;
    let r = rt
        .process(TaskRequest::converse("g3", plain.as_str(), "g-img", vec![m]))
        .await;
    let expect = format!(
        "image image/gif 206 bytes #{}",
        aether_runtime::multimodal::short_hash(&gif)
    );
    assert!(
        r.response_text().unwrap().contains(&expect),
        "{}",
        r.response_text().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_drops_and_keys_over_gemini_format() {
    let cfg = SimLlmConfig {
        sim: SimConfig {
            fixed_latency: Some(Duration::ZERO),
            ..SimConfig::default()
        },
        fault_sequence: vec![Some(Fault::RateLimit), None, Some(Fault::DropMidStream)],
        retry_after_s: 0.05,
        api_key: Some("k".into()),
        ..SimLlmConfig::default()
    };
    let (sim, url) = server(cfg).await;
    let rt = runtime(GeminiConfig {
        api_key: Some("k".into()),
        backoff_base: Duration::from_millis(1),
        max_retries: 1,
        ..GeminiConfig::new(&url)
    });
    let a = agent(&rt, &[]).await;
    let r = rt
        .process(TaskRequest::converse(
            "r1",
            a.as_str(),
            "r1",
            vec![UniversalMessage::user("hi")],
        ))
        .await;
    assert!(r.is_success(), "429 then success: {:?}", r.error);
    assert_eq!(sim.requests(), 2);

    let mut live = rt
        .start_live(
            TaskRequest::converse("r2", a.as_str(), "r2", vec![UniversalMessage::user("hi")]),
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

    let wrong = runtime(GeminiConfig {
        api_key: Some("nope".into()),
        max_retries: 0,
        ..GeminiConfig::new(&url)
    });
    let a = agent(&wrong, &[]).await;
    let e = wrong
        .process(TaskRequest::converse(
            "r3",
            a.as_str(),
            "r3",
            vec![UniversalMessage::user("hi")],
        ))
        .await
        .error
        .unwrap();
    assert!(
        e.message.contains("401") && e.message.contains("invalid API key"),
        "{}",
        e.message
    );
}
