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
    println!("{TIMING_MODEL}");
    Ok(())
}

/// How the simulated model spends its time, printed under the profiles.
const TIMING_MODEL: &str = "
Timing model (every delay is multiplied by --time-scale; 0 answers at once):
  latency  = TTFT + ms/token × (answer tokens − 1) ± jitter (uniform, seeded per call by --seed);
             with --model-latency-ms L, exactly L.
  answer   = `tokens` tokens of canned text (a tool call or a tool summary when tools are in
             play); the request's max_tokens cuts it to at most that many tokens, at a word.
  plain    = one answer after the whole latency.
  streamed = the same total latency: the first word at the time to first token, the others
             spread evenly up to the total, each due at a time fixed from the start (timer
             granularity never adds up). With --model-latency-ms L the first word comes at the
             profile's share of it: L × TTFT / (TTFT + ms/token × (answer tokens − 1)).
  usage    = prompt tokens counted with the profile's tokenizer; cost from the $/1K prices.";
