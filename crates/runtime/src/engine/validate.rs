//! Request validation, done once per request: which of `agent_id`, `session_id` and
//! `agent_config` is present decides what the request is ([`RequestPlan`]), what is missing is
//! said plainly, a turn's attachments are checked, and the result is a [`ValidRequest`] that
//! every framework adapter takes as it is.

use std::sync::Arc;
use std::time::Duration;

use aether_contracts::{AgentConfig, TaskRequest};
use serde_json::Value;
use tokio::time::Instant;

use crate::agents::Agent;
use crate::error::EngineError;
use crate::multimodal::{inspect_message, MediaLimits};

/// A request that passed validation: what it asks for, the request itself (its `agent_config`
/// taken out into the plan), and what validation learnt on the way.
///
/// The request is boxed: a `ValidRequest` moves through every future of the turn's path (the
/// assistant, the engine, the adapter), and a pointer moves for free where 700 bytes would be
/// copied at each step.
#[derive(Debug)]
pub struct ValidRequest {
    pub(crate) request: Box<TaskRequest>,
    pub(crate) plan: RequestPlan,
    /// Time spent checking the attachments (a turn's total time includes it).
    pub(crate) media_time: Duration,
    /// `execution_config.timeout`: bounds the whole turn, approval waits included.
    pub(crate) timeout: Option<Duration>,
    /// `metadata.framework`, when the request names one.
    pub(crate) framework: Option<String>,
    /// The turn's agent, when routing found it (so the adapter need not look it up again).
    pub(crate) agent: Option<Arc<Agent>>,
}

impl ValidRequest {
    pub fn request(&self) -> &TaskRequest {
        &self.request
    }

    pub fn plan(&self) -> &RequestPlan {
        &self.plan
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The request and its plan, for an adapter that takes them apart.
    pub fn into_parts(self) -> (TaskRequest, RequestPlan) {
        (*self.request, self.plan)
    }
}

/// The framework an agent config names (`framework_config.framework`).
pub(crate) fn framework_of(config: &AgentConfig) -> Option<&str> {
    config.framework_config.get("framework").and_then(Value::as_str)
}

/// Validates `request` into a [`ValidRequest`].
pub(crate) fn validate(mut request: Box<TaskRequest>, media: &MediaLimits) -> Result<ValidRequest, EngineError> {
    let mut plan = plan(&mut request)?;
    let framework = match request.metadata.get("framework") {
        None => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(EngineError::validation(
                "metadata.framework",
                "must be a framework's name, e.g. \"native\"",
            ))
        }
    };
    if let RequestPlan::CreateAgent(config) = &mut plan {
        match (framework_of(config), &framework) {
            (Some(named), Some(asked)) if named != asked => {
                return Err(EngineError::validation(
                    "metadata.framework",
                    format!("`{asked}` contradicts agent_config.framework_config.framework `{named}`"),
                ))
            }
            // Recorded in the config, so the agent keeps it wherever it is adopted.
            (None, Some(asked)) => {
                config
                    .framework_config
                    .insert("framework".into(), Value::from(asked.as_str()));
            }
            _ => {}
        }
    }
    let timeout = match request.execution_config.as_ref().and_then(|c| c.timeout) {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(EngineError::validation(
                "execution_config.timeout",
                format!("must be a positive number of seconds, got {t}"),
            ))
        }
    };
    let media_time = match plan {
        RequestPlan::Converse { .. } => {
            let started = Instant::now();
            inspect_media(&mut request, media)?;
            started.elapsed()
        }
        RequestPlan::CreateAgent(_) => Duration::ZERO,
    };
    Ok(ValidRequest {
        request,
        plan,
        media_time,
        timeout,
        framework,
        agent: None,
    })
}

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
fn inspect_media(req: &mut TaskRequest, limits: &MediaLimits) -> Result<(), EngineError> {
    for (i, m) in req.messages.iter_mut().enumerate() {
        inspect_message(m, limits)
            .map_err(|(part, e)| EngineError::validation(format!("messages[{i}].{part}"), e.to_string()))?;
    }
    Ok(())
}

/// Classifies a request; takes the agent config out of it.
fn plan(req: &mut TaskRequest) -> Result<RequestPlan, EngineError> {
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

#[cfg(test)]
mod tests {
    use aether_contracts::{ContentPart, ExecutionConfig, ImageReference, MessageContent, UniversalMessage};
    use serde_json::json;

    use super::*;

    fn field_of(e: EngineError) -> String {
        match e {
            EngineError::Validation { field, .. } => field,
            other => panic!("expected a validation error, got {other}"),
        }
    }

    fn turn() -> TaskRequest {
        TaskRequest::converse("t", "agent-1", "s", vec![UniversalMessage::user("hi")])
    }

    fn valid(r: TaskRequest) -> Result<ValidRequest, EngineError> {
        validate(Box::new(r), &MediaLimits::default())
    }

    #[test]
    fn the_two_shapes_of_the_protocol() {
        let create = valid(TaskRequest::create_agent(
            "c",
            AgentConfig::new("gpt-4o-mini", "Be brief."),
        ))
        .unwrap();
        assert!(matches!(create.plan(), RequestPlan::CreateAgent(_)));
        assert!(
            create.request().agent_config.is_none(),
            "the config moved into the plan"
        );

        let t = valid(turn()).unwrap();
        match t.plan() {
            RequestPlan::Converse { agent_id, session_id } => {
                assert_eq!((agent_id.as_deref(), session_id.as_str()), (Some("agent-1"), "s"))
            }
            other => panic!("{other:?}"),
        }
        // An existing session alone (in session_context) may carry a turn.
        let mut r = turn();
        r.agent_id = None;
        r.session_id = None;
        r.session_context = Some(aether_contracts::SessionContext {
            session_id: Some("ctx".into()),
            ..Default::default()
        });
        assert!(
            matches!(valid(r).unwrap().plan(), RequestPlan::Converse { agent_id: None, session_id } if session_id == "ctx")
        );
    }

    #[test]
    fn each_wrong_shape_names_its_field() {
        let mut r = turn();
        r.task_id = " ".into();
        assert_eq!(field_of(valid(r).unwrap_err()), "task_id");

        let mut r = turn();
        r.agent_id = Some("".into());
        assert_eq!(field_of(valid(r).unwrap_err()), "agent_id");

        let mut r = turn();
        r.session_id = None;
        assert_eq!(field_of(valid(r).unwrap_err()), "session_id");

        let mut r = turn();
        r.messages.clear();
        assert_eq!(field_of(valid(r).unwrap_err()), "messages");

        let mut r = turn();
        r.agent_id = None;
        r.session_id = None;
        assert_eq!(field_of(valid(r).unwrap_err()), "agent_id");

        let mut r = turn();
        r.agent_config = Some(AgentConfig::new("m", "p"));
        assert_eq!(
            field_of(valid(r).unwrap_err()),
            "agent_config",
            "config and agent_id together"
        );

        let mut r = TaskRequest::create_agent("c", AgentConfig::new("m", "p"));
        r.messages.push(UniversalMessage::user("hi"));
        assert_eq!(field_of(valid(r).unwrap_err()), "messages");

        let r = TaskRequest::create_agent("c", AgentConfig::new(" ", "p"));
        assert_eq!(field_of(valid(r).unwrap_err()), "agent_config.model_config.model");
    }

    #[test]
    fn timeout_and_framework_are_checked_once_here() {
        let with_timeout = |t: f64| {
            let mut r = turn();
            r.execution_config = Some(ExecutionConfig {
                timeout: Some(t),
                ..Default::default()
            });
            valid(r)
        };
        assert_eq!(with_timeout(0.25).unwrap().timeout(), Some(Duration::from_millis(250)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                field_of(with_timeout(bad).unwrap_err()),
                "execution_config.timeout",
                "{bad}"
            );
        }

        let mut r = turn();
        r.metadata.insert("framework".into(), json!(7));
        assert_eq!(field_of(valid(r).unwrap_err()), "metadata.framework");

        // metadata.framework at creation is recorded in the config; a contradiction is refused.
        let mut r = TaskRequest::create_agent("c", AgentConfig::new("m", "p"));
        r.metadata.insert("framework".into(), json!("adk"));
        match valid(r).unwrap().plan() {
            RequestPlan::CreateAgent(c) => assert_eq!(framework_of(c), Some("adk")),
            other => panic!("{other:?}"),
        }
        let mut config = AgentConfig::new("m", "p");
        config.framework_config.insert("framework".into(), json!("native"));
        let mut r = TaskRequest::create_agent("c", config);
        r.metadata.insert("framework".into(), json!("adk"));
        assert_eq!(field_of(valid(r).unwrap_err()), "metadata.framework");
    }

    #[test]
    fn a_bad_attachment_names_its_message_and_part() {
        let mut r = turn();
        let mut m = UniversalMessage::user("");
        m.content = MessageContent::Parts(vec![
            ContentPart::Text("look".into()),
            ContentPart::ImageReference(ImageReference {
                image_path: "data:image/png;base64,@@@not-base64@@@".into(),
                image_format: "png".into(),
                width: None,
                height: None,
                metadata: Default::default(),
            }),
        ]);
        r.messages = vec![m];
        let field = field_of(valid(r).unwrap_err());
        assert_eq!(field, "messages[0].content[1]");
    }
}
