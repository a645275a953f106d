//! `max_tokens` over the wire: `aether sim-llm` cuts the answer and says so (OpenAI's
//! `finish_reason: length`, Gemini's `MAX_TOKENS`), plain and streamed, and the providers read it
//! back (`ModelResponse::truncated`, `finish_reason()`, which the GenAI spans record).

mod common;

use aether_contracts::ModelConfig;
use aether_runtime::model::gemini::{GeminiConfig, GeminiProvider};
use aether_runtime::model::openai::{OpenAiConfig, OpenAiProvider};
use aether_runtime::model::{DeltaSink, ModelError, ModelProvider, PromptRequest};

struct Discard;

#[async_trait::async_trait]
impl DeltaSink for Discard {
    async fn delta(&mut self, _text: &str) -> Result<(), ModelError> {
        Ok(())
    }
}

/// (plain, streamed) answers of `provider` with `max_tokens`: each (finish reason, completion tokens).
async fn ask(provider: &dyn ModelProvider, model: &str, max_tokens: Option<u32>) -> [(&'static str, u64); 2] {
    let mut config = ModelConfig::new(model);
    config.max_tokens = max_tokens;
    let prompt = PromptRequest::new(
        config,
        "Be thorough.",
        "Summarise the account status for customer C-1001.",
    );
    let plain = provider.generate(prompt.request()).await.unwrap();
    let streamed = provider.generate_stream(prompt.request(), &mut Discard).await.unwrap();
    [
        (plain.finish_reason(), plain.usage.completion_tokens),
        (streamed.finish_reason(), streamed.usage.completion_tokens),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_at_max_tokens_says_length_over_openai_and_gemini() {
    let (_sim, base) = common::serve(common::instant()).await;
    let openai = OpenAiProvider::new(OpenAiConfig::new(format!("{base}/v1"))).unwrap();
    let gemini = GeminiProvider::new(GeminiConfig::new(format!("{base}/v1beta"))).unwrap();
    for (provider, model) in [
        (&openai as &dyn ModelProvider, "gpt-4o-mini"),
        (&gemini, "gemini-1.5-flash"),
    ] {
        let whole = ask(provider, model, None).await;
        assert_eq!(whole.map(|(reason, _)| reason), ["stop", "stop"], "{model}");
        assert!(whole[0].1 > 8, "{model}: {whole:?}");
        let cut = ask(provider, model, Some(8)).await;
        assert_eq!(cut.map(|(reason, _)| reason), ["length", "length"], "{model}");
        assert!(cut.iter().all(|(_, n)| *n <= 8), "{model}: {cut:?}");
    }
}
