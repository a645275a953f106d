//! `aether chat`: create an agent from flags, then run one turn per `--prompt` in one chat
//! session, printing each reply with its timing breakdown.

use aether_contracts::{AgentConfig, TaskRequest, TurnReport, UniversalMessage, UserContext};
use aether_runtime::{Runtime, RuntimeConfig};
use clap::Args;

use crate::exit::CliError;
use crate::framework_args::{self, FrameworkArgs};
use crate::mcp_args::McpArgs;
use crate::provider_args::ProviderArgs;
use crate::sim_args::{comma_list, SimArgs};
use crate::store_args::{self, StoreArgs, StoreKind};

#[derive(Args)]
pub struct ChatArgs {
    /// A user message; repeat the flag for several turns in the same session.
    #[arg(long = "prompt", short = 'p', value_name = "TEXT")]
    prompts: Vec<String>,

    /// Model name (selects the simulated model's latency and price profile).
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,

    /// The agent's system prompt.
    #[arg(long, default_value = "You are a helpful enterprise assistant.")]
    system_prompt: String,

    /// Comma list of tools the agent may call, e.g. `crm_lookup,fx_quote` (see `aether tools`).
    #[arg(long, default_value = "")]
    tools: String,

    /// Business chat-session id.
    #[arg(long, default_value = "chat-1")]
    session_id: String,

    #[arg(long)]
    user_id: Option<String>,

    /// Print each TaskResult as one line of JSON instead of text.
    #[arg(long)]
    json: bool,

    /// Send the prompts this many times over (a long conversation).
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: u64,

    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    provider: ProviderArgs,

    #[command(flatten)]
    sim: SimArgs,

    #[command(flatten)]
    framework: FrameworkArgs,

    #[command(flatten)]
    mcp: McpArgs,
}

/// `meter`: where the GenAI metrics go (the OTLP export), if anywhere.
pub async fn run(
    args: ChatArgs,
    meter: Option<std::sync::Arc<dyn aether_runtime::meter::GenAiMeter>>,
) -> Result<(), CliError> {
    let framework = args.framework.chosen()?.map(str::to_owned);
    let store = store_args::open(&args.store.config(StoreKind::Sqlite, StoreArgs::default_sqlite_path)?).await?;
    let store_info = store.info();
    let (builder, provider) = args
        .provider
        .apply(framework_args::install(Runtime::builder().store(store)))?;
    let rt = builder
        .config(RuntimeConfig {
            sweep_interval: None,
            ..RuntimeConfig::default()
        })
        .simulated_model(args.sim.sim_config()?)
        .demo_tools(args.sim.demo_config())
        .build()
        .map_err(|e| CliError::failed(e.to_string()))?;
    if let Some(m) = meter {
        // A fresh runtime: nothing else installed one.
        let _ = rt.install_meter(m);
    }
    // Shut down before returning: a stdio server then exits on its own (flushing its spans)
    // instead of being killed with this process.
    let mut mcp = args.mcp.attach(rt.tools()).await?;

    let mut config = AgentConfig::new(&args.model, &args.system_prompt).with_tools(comma_list(&args.tools));
    if let Some(f) = framework {
        config.framework_config.insert("framework".into(), f.into());
    }
    let created = rt.process(TaskRequest::create_agent("create-1", config)).await;
    let Some(agent_id) = created.agent_id.clone().filter(|_| created.is_success()) else {
        let msg = created
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| "agent creation failed".into());
        if let Some(h) = mcp.as_mut() {
            h.shutdown().await;
        }
        return Err(CliError::usage(msg));
    };
    let prompts = if args.prompts.is_empty() {
        vec!["Summarise the status of customer C-1001.".to_owned()]
    } else {
        args.prompts
    };
    if !args.json {
        let at = store_info
            .location
            .as_deref()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        println!(
            "agent {agent_id} · model {} · {} · {} store{at}\n",
            args.model,
            match &provider {
                None => "simulated model (no real provider configured)".to_owned(),
                Some((name, _)) => format!("provider {name} at {}", args.provider.url()),
            },
            store_info.kind
        );
    }
    let mut failed = 0;
    let turns = (0..args.repeat.max(1)).flat_map(|_| prompts.iter().cloned());
    for (i, prompt) in turns.enumerate() {
        let mut req = TaskRequest::converse(
            format!("turn-{}", i + 1),
            &agent_id,
            &args.session_id,
            vec![UniversalMessage::user(prompt)],
        );
        req.user_context = args.user_id.clone().map(|u| UserContext {
            user_id: Some(u),
            ..Default::default()
        });
        let r = rt.process(req).await;
        if !r.is_success() {
            failed += 1;
        }
        if args.json {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            continue;
        }
        match (&r.error, TurnReport::read(&r.metadata)) {
            (Some(e), _) => println!("turn {} · {} · {e}", i + 1, r.status),
            (None, Err(e)) => {
                failed += 1;
                println!("turn {} · {} · {e}", i + 1, r.status);
            }
            (None, Ok(report)) => {
                let t = &report.timing;
                println!(
                    "turn {} · {:.1} ms (model {:.1} ms, tools {:.1} ms, framework {:.3} ms) · {} tokens · ${:.6}",
                    i + 1,
                    t.total_us / 1000.0,
                    t.model_us / 1000.0,
                    t.tool_us / 1000.0,
                    t.overhead_us / 1000.0,
                    report.token_usage.total_tokens,
                    report.cost_usd,
                );
                for t in &r.tool_results {
                    println!("  tool {} → {} {}", t.tool_name, t.status, t.result_data);
                }
                println!("  {}\n", r.response_text().unwrap_or_default());
            }
        }
    }
    if let Some(h) = mcp.as_mut() {
        h.shutdown().await;
    }
    rt.shutdown()
        .await
        .map_err(|e| CliError::failed(format!("flushing the session store: {e}")))?;
    if failed > 0 {
        return Err(CliError::failed(format!("{failed} turn(s) failed")));
    }
    Ok(())
}
