//! Stage one of a run: building the target it drives — the in-process runtime (with its store,
//! provider, MCP servers and, for tool_regression, the per-call cost table) or a remote
//! `aether serve` — and checking the tools against it. The one home of the rules that tie the
//! options together ([`check_options`]).

use std::sync::Arc;
use std::time::Duration;

use aether_mcp::{McpHub, McpServerConfig};
use aether_runtime::model::{NamedProvider, ProfileSet, ProviderInfo, SimConfig};
use aether_runtime::tools::demo::DemoToolConfig;
use aether_runtime::{Runtime, RuntimeConfig};
use aether_store::{SessionStore, StoreConfig};

use crate::error::HarnessError;
use crate::progress::Progress;
use crate::scenario::{ScenarioConfig, ScenarioKind};
use crate::stats::DurationHist;
use crate::target::{InProcess, Target};
use crate::tool_calls;
use crate::tool_calls::ToolCallCost;

/// What [`check_options`] looks at.
pub struct Choices<'a> {
    pub kind: ScenarioKind,
    /// `--target`: a remote `aether serve` instead of a runtime in this process.
    pub remote_target: bool,
    pub mcp: &'a [McpServerConfig],
    /// `--provider` names a model endpoint (not the simulated model).
    pub model_endpoint: bool,
}

/// Checks the options that only make sense together, before anything is built or connected:
/// the one home of these rules (the CLI calls it before connecting; every run calls it again).
pub fn check_options(c: &Choices<'_>) -> Result<(), HarnessError> {
    let refuse = |m: &str| Err(HarnessError::InvalidInput(m.to_owned()));
    if c.kind.drives_endpoint() {
        if c.remote_target {
            return refuse(
                "--target: endpoint_load drives a model endpoint, given by --provider and --base-url; \
                 --target is for the scenarios that drive the runtime",
            );
        }
        if !c.mcp.is_empty() {
            return refuse("--mcp: endpoint_load calls the model alone; it has no agent to give tools to");
        }
        if !c.model_endpoint {
            return refuse(
                "endpoint_load drives a model endpoint: give --provider openai|gemini --base-url URL (e.g. an \
                 `aether sim-llm`), or --provider local --model-path FILE",
            );
        }
        return Ok(());
    }
    if c.remote_target && !c.mcp.is_empty() {
        return refuse("--mcp: MCP servers of a remote target are configured on its server (aether serve --mcp)");
    }
    Ok(())
}

/// Adds frameworks to a runtime being built (the CLI adds `adk`; the harness knows none).
pub type FrameworkHook = Arc<dyn Fn(aether_runtime::RuntimeBuilder) -> aether_runtime::RuntimeBuilder + Send + Sync>;

/// What the target is built from.
pub(crate) struct Sources<'a> {
    pub target: Option<Arc<dyn Target>>,
    pub store: &'a StoreConfig,
    pub profiles: ProfileSet,
    pub provider: Option<NamedProvider>,
    pub mcp: Vec<McpServerConfig>,
    pub tool_call_samples: u32,
    pub per_call_session_samples: u32,
    pub meter: Option<Arc<dyn aether_runtime::meter::GenAiMeter>>,
    pub frameworks: Option<FrameworkHook>,
}

/// The built target and what was measured while building it.
pub(crate) struct Built {
    pub target: Arc<dyn Target>,
    /// The MCP servers attached to the in-process runtime (shut down after the run).
    pub hub: Option<McpHub>,
    /// tool_regression: what one call costs, in process and over MCP.
    pub call_costs: Option<Vec<ToolCallCost>>,
    /// How long resolving the scenario's tools takes.
    pub resolution: Option<DurationHist>,
}

pub(crate) async fn build(
    cfg: &ScenarioConfig,
    src: Sources<'_>,
    progress: &dyn Progress,
) -> Result<Built, HarnessError> {
    let mut hub = None;
    let mut call_costs = None;
    let target: Arc<dyn Target> = match src.target {
        Some(t) => t,
        None => {
            let store = aether_store::open(src.store)
                .await
                .map_err(|e| HarnessError::InvalidInput(e.to_string()))?;
            let provider_info = src.provider.as_ref().map_or(
                ProviderInfo {
                    name: "simulated".into(),
                    simulated: true,
                },
                |(_, p)| p.info().clone(),
            );
            let runtime = build_runtime(cfg, src.profiles, store, src.provider, src.frameworks.as_ref())?;
            if let Some(m) = src.meter {
                runtime
                    .install_meter(m)
                    .map_err(|e| HarnessError::Runtime(e.to_string()))?;
            }
            if !src.mcp.is_empty() {
                hub = Some(
                    McpHub::attach(Arc::clone(runtime.tools()), src.mcp)
                        .await
                        .map_err(|e| HarnessError::InvalidInput(e.to_string()))?,
                );
            }
            if cfg.kind == ScenarioKind::ToolRegression {
                progress.begin("tool call cost (one call at a time)", None);
                call_costs = Some(
                    tool_calls::measure(
                        &runtime,
                        hub.as_ref(),
                        &cfg.tools,
                        src.tool_call_samples.max(1),
                        src.per_call_session_samples.max(1),
                    )
                    .await?,
                );
                progress.finish();
            }
            Arc::new(InProcess {
                runtime,
                provider: provider_info,
            })
        }
    };
    let resolution = resolve_tools(target.as_ref(), &cfg.tools)?;
    Ok(Built {
        target,
        hub,
        call_costs,
        resolution,
    })
}

fn build_runtime(
    cfg: &ScenarioConfig,
    profiles: ProfileSet,
    store: Arc<dyn SessionStore>,
    provider: Option<NamedProvider>,
    frameworks: Option<&FrameworkHook>,
) -> Result<Runtime, HarnessError> {
    let secs = |s: f64| Duration::from_secs_f64(s);
    let sim = SimConfig {
        time_scale: cfg.time_scale,
        fixed_latency: cfg.model_latency_ms.map(Duration::from_millis),
        seed: cfg.seed,
        error_rate: cfg.error_rate,
        profiles,
        ..SimConfig::default()
    };
    let mut demo = DemoToolConfig {
        time_scale: cfg.time_scale,
        ..DemoToolConfig::default()
    };
    if let Some(ms) = cfg.tool_latency_ms {
        demo.latency = Duration::from_millis(ms);
    }
    let ttl = secs(cfg.session_idle_ttl_s);
    let mut approvals = aether_runtime::approvals::ApprovalConfig::default();
    approvals
        .tools
        .extend(cfg.approval_tools.iter().map(|t| (t.clone(), true)));
    let config = RuntimeConfig {
        approvals,
        session_idle_ttl: ttl,
        archive_ttl: secs(cfg.archive_ttl_s),
        sweep_interval: Some((ttl / 2).clamp(Duration::from_millis(500), Duration::from_secs(5))),
        ..RuntimeConfig::default()
    };
    let mut builder = Runtime::builder();
    if let Some(add) = frameworks {
        builder = add(builder);
    }
    if let Some((name, p)) = provider {
        builder = builder.provider(name.clone(), p).default_provider(name);
    }
    builder
        .config(config)
        .store(store)
        .simulated_model(sim)
        .demo_tools(demo)
        .build()
        .map_err(|e| HarnessError::Runtime(e.to_string()))
}

/// Resolves every tool name (a clear error for an unknown one) and times the resolution.
fn resolve_tools(target: &dyn Target, tools: &[String]) -> Result<Option<DurationHist>, HarnessError> {
    if tools.is_empty() {
        return Ok(None);
    }
    for t in tools {
        target
            .resolve_tool(t)
            .map_err(|e| HarnessError::InvalidInput(format!("--tools: {e}")))?;
    }
    let mut h = DurationHist::default();
    for _ in 0..200 {
        for t in tools {
            let start = std::time::Instant::now();
            let _ = target.resolve_tool(t);
            h.record(start.elapsed());
        }
    }
    Ok(Some(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: ScenarioKind, remote_target: bool, mcp: bool, model_endpoint: bool) -> Result<(), String> {
        let servers = if mcp {
            vec![McpServerConfig::parse_spec("fs=http://127.0.0.1:1/mcp").unwrap()]
        } else {
            Vec::new()
        };
        check_options(&Choices {
            kind,
            remote_target,
            mcp: &servers,
            model_endpoint,
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn mcp_belongs_to_the_runtime_in_this_process() {
        assert!(check(ScenarioKind::Standard, false, true, false).is_ok());
        assert!(check(ScenarioKind::Standard, true, false, false).is_ok());
        let e = check(ScenarioKind::Standard, true, true, false).unwrap_err();
        assert!(e.contains("--mcp") && e.contains("aether serve --mcp"), "{e}");
    }

    #[test]
    fn endpoint_load_needs_a_model_endpoint_and_nothing_of_the_runtime() {
        assert!(check(ScenarioKind::EndpointLoad, false, false, true).is_ok());
        let e = check(ScenarioKind::EndpointLoad, false, false, false).unwrap_err();
        assert!(e.contains("--provider"), "{e}");
        let e = check(ScenarioKind::EndpointLoad, true, false, true).unwrap_err();
        assert!(e.starts_with("--target"), "{e}");
        let e = check(ScenarioKind::EndpointLoad, false, true, true).unwrap_err();
        assert!(e.starts_with("--mcp"), "{e}");
        // A real provider is fine for the runtime scenarios too.
        assert!(check(ScenarioKind::Standard, false, false, true).is_ok());
    }
}
