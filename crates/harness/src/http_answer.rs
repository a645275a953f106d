//! A task result's JSON read the way the load loop needs it, in one typed pass.
//!
//! A `TaskResult` carries its turn report in `metadata`, a JSON object: read as a
//! `serde_json::Map`, every key and value of it is allocated (a 1.6 KB answer's report has 39
//! keys, each a string and a value), and then the figures are read back out of that tree; a
//! profile of `perf run --target` put a third of the load generator's CPU in that read. Here a
//! successful answer is read once into typed parts: the figures, `trace_id` and agent creation's
//! `reused` flag (the only other parts of the report the load loop reads: handed over as a
//! [`ReadReport`], so the result's `metadata` stays an empty map, never built), and the result's
//! own fields; `created_at` (left `None`) and the report's other parts are skipped unparsed. A
//! failed task, or any part not as expected, gives `None`: the caller then reads the answer
//! whole, so failures and report errors are exactly those of the full read.

use std::borrow::Cow;

use aether_contracts::{
    simulated_provider, ReportError, TaskResult, TaskStatus, TokenUsage, ToolResult, TurnFigures, TurnTiming,
    UniversalMessage,
};
use aether_runtime::model::ProviderInfo;
use serde::Deserialize;

use crate::target::{Measured, ReadReport};

#[derive(Deserialize)]
struct Answer<'a> {
    task_id: String,
    status: TaskStatus,
    #[serde(default)]
    messages: Vec<UniversalMessage>,
    #[serde(default)]
    tool_results: Vec<ToolResult>,
    #[serde(default)]
    execution_time: Option<f64>,
    #[serde(default, borrow)]
    metadata: Meta<'a>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct Meta<'a> {
    /// Agent creation's report: the load loop reads its `reused` flag alone.
    agent: Option<AgentReused>,
    trace_id: Option<String>,
    #[serde(borrow)]
    provider: Option<Provider<'a>>,
    /// Read field by field: agent creation's answer times only `total_us`.
    timing: Option<Timing>,
    token_usage: Option<TokenUsage>,
    cost_usd: Option<f64>,
    session: Option<Session>,
}

#[derive(Deserialize)]
struct AgentReused {
    reused: bool,
}

#[derive(Deserialize)]
struct Provider<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    simulated: bool,
    #[serde(default, borrow)]
    profile: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Timing {
    total_us: Option<f64>,
    model_us: Option<f64>,
    tool_us: Option<f64>,
    approval_us: Option<f64>,
    media_us: Option<f64>,
    overhead_us: Option<f64>,
    model_calls: Option<u32>,
    tool_calls: Option<u64>,
}

impl Timing {
    /// The whole timing, or which field is missing (as the full read would say).
    fn whole(&self) -> Result<TurnTiming, ReportError> {
        let field = |name: &str| ReportError {
            key: "timing",
            message: format!("missing field `{name}`"),
        };
        Ok(TurnTiming {
            total_us: self.total_us.ok_or_else(|| field("total_us"))?,
            model_us: self.model_us.ok_or_else(|| field("model_us"))?,
            tool_us: self.tool_us.ok_or_else(|| field("tool_us"))?,
            approval_us: self.approval_us.ok_or_else(|| field("approval_us"))?,
            media_us: self.media_us.ok_or_else(|| field("media_us"))?,
            overhead_us: self.overhead_us.ok_or_else(|| field("overhead_us"))?,
            model_calls: self.model_calls.ok_or_else(|| field("model_calls"))?,
            tool_calls: self.tool_calls.ok_or_else(|| field("tool_calls"))?,
        })
    }
}

#[derive(Deserialize)]
struct Session {
    created: bool,
}

fn missing(key: &'static str) -> ReportError {
    ReportError {
        key,
        message: "missing".into(),
    }
}

/// Reads a successful answer's JSON: the result as the load loop reads it, and who answered
/// (when `want_provider`: the target learns it once). `None` for anything else (see the module
/// header).
pub(crate) fn read(body: &[u8], want_provider: bool) -> Option<(Measured, Option<ProviderInfo>)> {
    // Checked as UTF-8 once, whole: read from a slice, serde_json checks each string it lends
    // on its own (callgrind, `perf run --target`, 3,000 requests: `from_utf8` 22.7 M → 3.5 M
    // instructions, this function 120 M → 100 M).
    let body = std::str::from_utf8(body).ok()?;
    let a: Answer<'_> = serde_json::from_str(body).ok()?;
    if a.status != TaskStatus::Success {
        return None;
    }
    let m = a.metadata;
    let provider = m.provider.as_ref().filter(|_| want_provider).map(|p| ProviderInfo {
        name: p.name.clone().into_owned(),
        simulated: p.simulated,
    });
    // The parts in the order `TurnReport::figures` reads them, so a missing one is named alike.
    let figures = (|| {
        let p = m.provider.as_ref().ok_or_else(|| missing("provider"))?;
        Ok(TurnFigures {
            timing: m.timing.as_ref().ok_or_else(|| missing("timing"))?.whole()?,
            token_usage: m.token_usage.ok_or_else(|| missing("token_usage"))?,
            cost_usd: m.cost_usd.ok_or_else(|| missing("cost_usd"))?,
            simulated: simulated_provider(p.simulated, p.profile.as_deref()),
            session_created: m.session.as_ref().ok_or_else(|| missing("session"))?.created,
        })
    })();
    let result = TaskResult {
        task_id: a.task_id,
        status: TaskStatus::Success,
        result_data: None,
        messages: a.messages,
        tool_results: a.tool_results,
        error_message: None,
        error: None,
        execution_time: a.execution_time,
        // Not read (the load loop never looks at it), and not the harness's clock either.
        created_at: None,
        metadata: Default::default(),
        session_id: a.session_id,
        agent_id: a.agent_id,
    };
    Some((
        Measured {
            result,
            figures: Some(figures),
            read: Some(ReadReport {
                trace_id: m.trace_id,
                agent_reused: m.agent.map(|a| a.reused),
            }),
        },
        provider,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_contracts::{AgentReport, TurnReport};

    const TURN: &str = r#"{"task_id":"t1","status":"success","messages":[{"role":"assistant","content":"[simulated] hi","author":"agent-1"}],
        "tool_results":[],"execution_time":0.0004,"created_at":"2026-12-04T02:03:54.242344607Z",
        "metadata":{"agent_context":{"agent_id":"agent-1","session_id":"s1","user_id":null},"cost_usd":5.76e-05,
        "execution_stats":{"duration_ms":0.41,"status":"success"},
        "provider":{"model":"gpt-4o-mini","name":"simulated","profile":"gpt-4o-mini","simulated":true},
        "session":{"agent_switched":false,"created":true,"events":2,"turn":1},
        "timing":{"approval_us":0.0,"media_us":0.7,"model_calls":1,"model_us":320.1,"overhead_us":96.1,"tool_calls":0,"tool_us":0.0,"total_us":416.2},
        "token_usage":{"completion_tokens":94,"prompt_tokens":8,"total_tokens":102},"trace_id":"abc"},
        "session_id":"s1","agent_id":"agent-1"}"#;

    #[test]
    fn a_turn_reads_the_same_figures_as_the_full_read() {
        let (m, provider) = read(TURN.as_bytes(), true).expect("a successful turn");
        let full: TaskResult = serde_json::from_str(TURN).unwrap();
        assert_eq!(m.figures.clone().unwrap(), TurnReport::figures(&full.metadata));
        assert!(m.figures.as_ref().unwrap().as_ref().unwrap().simulated);
        assert_eq!(m.result.response_text(), full.response_text());
        assert_eq!(
            (m.result.task_id.as_str(), m.result.agent_id.as_deref()),
            ("t1", Some("agent-1"))
        );
        assert_eq!(m.trace_id(), Some("abc"));
        assert!(
            m.result.metadata.is_empty(),
            "the report is handed over read, not as a map"
        );
        // A turn has no agent part: said as the full read says it.
        let whole = Measured::of(full);
        assert_eq!(whole.trace_id(), Some("abc"));
        assert!(m.agent_reused().is_err());
        assert_eq!(m.agent_reused(), whole.agent_reused());
        assert_eq!(
            provider.map(|p| (p.name, p.simulated)),
            Some(("simulated".into(), true))
        );
    }

    #[test]
    fn agent_creation_keeps_its_report_and_has_no_figures() {
        // As `aether serve` answers it: the agent's report, and a timing of the whole call only.
        let body = r#"{"task_id":"c1","status":"success","messages":[],"tool_results":[],"execution_time":0.14,
            "created_at":"2026-12-04T02:16:30.768760602Z","metadata":{"agent":{"agent_id":"agent-1","reused":true,
            "provider":{"name":"simulated","simulated":true},"tools":[]},"timing":{"total_us":144104.6}},"agent_id":"agent-1"}"#;
        let (m, provider) = read(body.as_bytes(), true).expect("a successful creation");
        assert_eq!(m.agent_reused(), Ok(true));
        let full: TaskResult = serde_json::from_str(body).unwrap();
        assert_eq!(AgentReport::reused(&full.metadata), Ok(true));
        assert_eq!(m.trace_id(), None);
        // A malformed `reused` is left to the full read, which names it.
        let bad = body.replace(r#""reused":true"#, r#""reused":"yes""#);
        assert!(read(bad.as_bytes(), true).is_none());
        let full: TaskResult = serde_json::from_str(&bad).unwrap();
        assert!(Measured::of(full).agent_reused().is_err());
        assert_eq!(m.figures.unwrap().unwrap_err().key, "provider");
        assert!(provider.is_none());
    }

    #[test]
    fn failures_and_malformed_reports_are_left_to_the_full_read() {
        let failed = r#"{"task_id":"t","status":"error","error":{"code":"model.error","message":"x"}}"#;
        assert!(read(failed.as_bytes(), true).is_none());
        let bad = TURN.replace(r#""cost_usd":5.76e-05"#, r#""cost_usd":"cheap""#);
        assert!(read(bad.as_bytes(), true).is_none());
        assert!(read(b"not json", true).is_none());
        // A missing part is named as the full read names it.
        for partial in [
            TURN.replace(r#""timing":"#, r#""timing_":"#),
            TURN.replace(r#""model_us":320.1,"#, ""),
        ] {
            let (m, _) = read(partial.as_bytes(), true).unwrap();
            let full: TaskResult = serde_json::from_str(&partial).unwrap();
            assert_eq!(m.figures.clone().unwrap(), TurnReport::figures(&full.metadata));
            assert!(m.figures.unwrap().is_err());
        }
    }
}
