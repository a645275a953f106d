//! `aether tools` and `aether models`: what the embedded runtime offers.

use aether_runtime::Runtime;
use clap::Args;

use crate::exit::CliError;
use crate::mcp_args::McpArgs;
use crate::sim_args::SimArgs;

#[derive(Args)]
pub struct ToolsArgs {
    /// Print the full declarations (name, description, JSON Schema) as JSON.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    mcp: McpArgs,
}

pub async fn tools(args: ToolsArgs) -> Result<(), CliError> {
    let rt = Runtime::builder()
        .config(aether_runtime::RuntimeConfig {
            sweep_interval: None,
            ..Default::default()
        })
        .build()
        .map_err(|e| CliError::failed(e.to_string()))?;
    let mut hub = args.mcp.attach(rt.tools()).await?;
    let tools = rt.tools().list();
    if let Some(h) = hub.as_mut() {
        h.shutdown().await;
    }
    if args.json {
        let specs: Vec<_> = tools.iter().map(|t| &t.spec).collect();
        println!("{}", serde_json::to_string_pretty(&specs).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{:<32} {:<10} {:<28} DESCRIPTION",
        "TOOL", "KIND", "REQUIRED PARAMETERS"
    );
    for t in tools {
        let required = t
            .spec
            .parameters_schema
            .get("required")
            .and_then(|r| r.as_array())
            .map_or_else(String::new, |r| {
                r.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            });
        let kind = if t.is_blocking() { "blocking" } else { "async" };
        let kind = if t.spec.metadata.contains_key("mcp_server") {
            "mcp"
        } else {
            kind
        };
        println!(
            "{:<32} {:<10} {:<28} {}",
            t.full_name, kind, required, t.spec.description
        );
    }
    println!("\nShort names resolve when unique (`crm_lookup` → `demo.crm_lookup`).");
    Ok(())
}

#[derive(Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    sim: SimArgs,
}

pub fn models(args: ModelsArgs) -> Result<(), CliError> {
    let profiles = args.sim.profiles()?;
    println!("Simulated model profiles (any other model name uses `default`):\n");
    println!(
        "{:<18} {:>8} {:>12} {:>9} {:>7} {:>12} {:>12} TOKENIZER",
        "MODEL", "TTFT ms", "ms/token", "jitter", "tokens", "$/1K prompt", "$/1K compl."
    );
    let mut names: Vec<&str> = profiles.names();
    names.push("default");
    for name in names {
        let (_, p) = profiles.lookup(name);
        let p = if name == "default" {
            profiles.default_profile()
        } else {
            p
        };
        println!(
            "{:<18} {:>8.0} {:>12.1} {:>9.0} {:>7} {:>12.6} {:>12.6} {}",
            name,
            p.ttft_ms,
            p.per_token_ms,
            p.jitter_ms,
            p.output_tokens,
            p.prompt_price_per_1k,
            p.completion_price_per_1k,
            p.tokenizer
        );
    }
    Ok(())
}
