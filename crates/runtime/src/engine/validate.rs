//! Request validation: which of `agent_id`, `session_id` and `agent_config` is present decides
//! what the request is, and what is missing is said plainly.

use aether_contracts::{AgentConfig, TaskRequest};

use crate::error::EngineError;
use crate::multimodal::{inspect_message, MediaLimits};

/// What a valid request asks for.
#[derive(Debug)]
pub enum RequestPlan {
    /// Step one of the protocol: create (or reuse) an agent.
    CreateAgent(AgentConfig),
    /// Step two: a turn in chat session `session_id`, with `agent_id` or the session's agent.
    Converse {
        agent_id: Option<String>,
        session_id: String,
    },
}

fn non_empty(field: &'static str, v: Option<String>) -> Result<Option<String>, EngineError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(EngineError::validation(field, "must not be empty")),
        other => Ok(other),
    }
}

/// Checks the attachments of every message (and records what was found in them).
pub(crate) fn inspect_media(req: &mut TaskRequest, limits: &MediaLimits) -> Result<(), EngineError> {
    for (i, m) in req.messages.iter_mut().enumerate() {
        inspect_message(m, limits)
            .map_err(|(part, e)| EngineError::validation(format!("messages[{i}].{part}"), e.to_string()))?;
    }
    Ok(())
}

/// Classifies a request; takes the agent config out of it.
pub(crate) fn plan(req: &mut TaskRequest) -> Result<RequestPlan, EngineError> {
    if req.task_id.trim().is_empty() {
        return Err(EngineError::validation("task_id", "must not be empty"));
    }
    let agent_id = non_empty("agent_id", req.agent_id.clone())?;
    let session_id = non_empty(
        "session_id",
        req.session_id
            .clone()
            .or_else(|| req.session_context.as_ref().and_then(|c| c.session_id.clone())),
    )?;

    if let Some(config) = req.agent_config.take() {
        if agent_id.is_some() {
            return Err(EngineError::validation(
                "agent_config",
                "send either agent_config (to create an agent) or agent_id (to converse), not both",
            ));
        }
        if !req.messages.is_empty() {
            return Err(EngineError::validation(
                "messages",
                "agent_config cannot come with messages: first create the agent (agent_config alone), \
                 then converse with agent_id + session_id + messages",
            ));
        }
        if config.model_config.model.trim().is_empty() {
            return Err(EngineError::validation(
                "agent_config.model_config.model",
                "must name a model",
            ));
        }
        return Ok(RequestPlan::CreateAgent(config));
    }

    match (agent_id, session_id) {
        (None, None) => Err(EngineError::validation(
            "agent_id",
            "missing: send agent_config to create an agent, or agent_id + session_id + messages to converse",
        )),
        (Some(_), None) => Err(EngineError::validation(
            "session_id",
            "missing: a turn needs the business chat session id along with agent_id",
        )),
        (agent_id, Some(session_id)) => {
            if req.messages.is_empty() {
                return Err(EngineError::validation("messages", "a turn needs at least one message"));
            }
            Ok(RequestPlan::Converse { agent_id, session_id })
        }
    }
}
