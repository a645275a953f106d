//! Aether's model providers as adk's `Llm`.
//!
//! adk's `LlmAgent` asks for each model call with its own request (the contents it built from
//! the session); [`AetherModel`] turns those contents back into Aether events and calls the
//! agent's provider through the runtime's [`TurnKit`](aether_runtime::engine::TurnKit), so the
//! call has the same `chat` span, GenAI metrics and timings as on the native framework, and the
//! simulator its profiles. A live turn's text streams as adk partial responses, one per delta.

use std::sync::Arc;

use adk_core::{AdkError, Content, FinishReason, Llm, LlmRequest, LlmResponse, LlmResponseStream, Part, UsageMetadata};
use aether_contracts::{Role, UniversalMessage};
use aether_runtime::model::{DeltaSink, HistoryView, ModelError, ModelRequest, ModelResponse};
use aether_store::SessionEvent;
use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::convert::{message_of, tool_summary};
use crate::turn::Turn;

/// Text deltas that may wait between the provider and adk's stream.
const DELTA_BUFFER: usize = 64;

/// The model of one Aether agent, as adk calls it.
pub(crate) struct AetherModel {
    /// The agent's model name (what adk reports).
    pub name: String,
}

#[async_trait]
impl Llm for AetherModel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn generate_content(&self, req: LlmRequest, _stream: bool) -> adk_core::Result<LlmResponseStream> {
        let turn = Turn::current()
            .ok_or_else(|| AdkError::model("Aether's model runs only inside an Aether turn (Runtime::process)"))?;
        let history = history_of(&turn, &req.contents);
        let stream = async_stream::stream! {
            let agent = Arc::clone(&turn.agent);
            let request = ModelRequest {
                model: &agent.config.model_config,
                system: &agent.system,
                history: HistoryView { committed: &history, pending: &[] },
                tools: &agent.declarations,
                metadata: &turn.metadata,
            };
            let (response, elapsed) = if turn.streaming {
                let (tx, mut rx) = mpsc::channel::<String>(DELTA_BUFFER);
                let mut sink = ChannelSink(tx);
                let call = turn.kit.call_model(&agent, &turn.session_id, request, Some(&mut sink));
                tokio::pin!(call);
                let done = loop {
                    tokio::select! {
                        biased;
                        Some(delta) = rx.recv() => yield Ok(partial(delta)),
                        done = &mut call => break done,
                    }
                };
                while let Ok(delta) = rx.try_recv() {
                    yield Ok(partial(delta));
                }
                done
            } else {
                turn.kit.call_model(&agent, &turn.session_id, request, None).await
            };
            let answered = {
                let mut tally = turn.tally.lock();
                tally.outcome.model_calls += 1;
                match response {
                    Ok(r) => {
                        tally.outcome.model_answered(&r, elapsed);
                        Ok(answer(r, turn.streaming))
                    }
                    Err(e) => {
                        tally.outcome.model_time += elapsed;
                        let message = e.to_string();
                        tally.model_error = Some(e);
                        Err(AdkError::model(message))
                    }
                }
            };
            yield answered;
        };
        Ok(Box::pin(stream))
    }
}

/// adk's contents as the Aether events a provider reads. adk answers each call of a batch in its
/// own content; they read as one tool message, as on the native framework, and a call a person
/// refused reads as it does there (adk answers it with its own error).
fn history_of(turn: &Turn, contents: &[Content]) -> Vec<Arc<SessionEvent>> {
    let mut merged: Vec<(UniversalMessage, Vec<aether_contracts::ToolResult>)> = Vec::with_capacity(contents.len());
    for c in contents {
        let (message, results) = message_of(c);
        match merged.last_mut() {
            Some((last, earlier)) if message.role == Role::Tool && last.role == Role::Tool => {
                earlier.extend(results);
            }
            _ => merged.push((message, results)),
        }
    }
    merged
        .into_iter()
        .enumerate()
        .map(|(i, (mut message, mut results))| {
            if message.role == Role::Tool {
                results = turn.with_refusals(results);
                message = UniversalMessage::text(Role::Tool, tool_summary(&results));
            }
            Arc::new(SessionEvent::new(
                i as u64,
                Arc::clone(&turn.session_id),
                Arc::clone(&turn.agent.id),
                message,
                results,
            ))
        })
        .collect()
}

/// A streamed delta as an adk partial response.
fn partial(delta: String) -> LlmResponse {
    LlmResponse {
        content: Some(Content {
            role: "model".to_owned(),
            parts: vec![Part::Text { text: delta }],
        }),
        partial: true,
        ..Default::default()
    }
}

/// A whole answer as adk's terminal response. After streamed deltas it says `content_complete`,
/// so that adk keeps this content instead of appending it to the deltas.
fn answer(r: ModelResponse, streamed: bool) -> LlmResponse {
    let mut parts = Vec::with_capacity(1 + r.tool_calls.len());
    if !r.text.is_empty() {
        parts.push(Part::Text {
            text: r.text.to_string(),
        });
    }
    for c in r.tool_calls {
        parts.push(Part::FunctionCall {
            name: c.qualified_name().into_owned(),
            args: serde_json::Value::Object(c.parameters),
            id: c.call_id,
            thought_signature: None,
        });
    }
    let input = r.usage.prompt_tokens as i32;
    let output = r.usage.completion_tokens as i32;
    LlmResponse {
        content: Some(Content {
            role: "model".to_owned(),
            parts,
        }),
        usage_metadata: Some(UsageMetadata {
            prompt_token_count: input,
            candidates_token_count: output,
            total_token_count: input + output,
            ..Default::default()
        }),
        finish_reason: Some(FinishReason::Stop),
        partial: false,
        turn_complete: true,
        provider_metadata: streamed.then(|| serde_json::json!({ "content_complete": true })),
        ..Default::default()
    }
}

/// Where a provider's streamed deltas go: to adk's stream, through a bounded channel.
struct ChannelSink(mpsc::Sender<String>);

#[async_trait]
impl DeltaSink for ChannelSink {
    async fn delta(&mut self, text: &str) -> Result<(), ModelError> {
        self.0
            .send(text.to_owned())
            .await
            .map_err(|_| ModelError::Other("adk stopped reading the model's stream".into()))
    }
}
