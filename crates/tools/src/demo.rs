//! The `demo` tools of the performance plan: deterministic async tools with a configurable
//! latency (`crm_lookup`, `doc_indexer`, `aml_checker`, `kyc_screen`, `fx_quote`, `stock_quote`).
//!
//! Each result is a small JSON object derived from a hash of the parameters, so the same call
//! always returns the same answer. Latency is scaled by the time scale like every simulated delay.

use std::collections::HashMap;
use std::time::Duration;

use aether_contracts::{Metadata, UniversalTool};
use async_trait::async_trait;
use serde_json::{json, Value};

use super::{AsyncTool, RegisteredTool, ToolContext, ToolError};

/// Names of the demo tools, in the plan's order.
pub const DEMO_TOOLS: &[&str] = &[
    "crm_lookup",
    "doc_indexer",
    "aml_checker",
    "kyc_screen",
    "fx_quote",
    "stock_quote",
];

/// Default latency of every demo tool.
pub const DEFAULT_DEMO_LATENCY: Duration = Duration::from_millis(100);

/// Latency settings of the demo tools.
#[derive(Debug, Clone)]
pub struct DemoToolConfig {
    /// Latency of every demo tool unless `per_tool` names it.
    pub latency: Duration,
    /// Per-tool latency by short name.
    pub per_tool: HashMap<String, Duration>,
    /// Multiplies the latency; 0 means none.
    pub time_scale: f64,
}

impl Default for DemoToolConfig {
    fn default() -> Self {
        Self {
            latency: DEFAULT_DEMO_LATENCY,
            per_tool: HashMap::new(),
            time_scale: 1.0,
        }
    }
}

struct DemoTool {
    delay: Duration,
    respond: fn(&Metadata, u64) -> Value,
}

#[async_trait]
impl AsyncTool for DemoTool {
    async fn call(&self, params: Metadata, _ctx: ToolContext) -> Result<Value, ToolError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let h = aether_contracts::fnv1a(serde_json::to_string(&params).unwrap_or_default().as_bytes());
        Ok((self.respond)(&params, h))
    }
}

fn s<'a>(p: &'a Metadata, k: &str) -> &'a str {
    p.get(k).and_then(Value::as_str).unwrap_or("")
}

fn definition(name: &str) -> (&'static str, Value, fn(&Metadata, u64) -> Value) {
    match name {
        "crm_lookup" => (
            "Looks up a customer record in the CRM.",
            json!({"type": "object", "properties": {"customer_id": {"type": "string", "minLength": 1, "examples": ["C-1001"]}}, "required": ["customer_id"], "additionalProperties": false}),
            |p, h| json!({"customer_id": s(p, "customer_id"), "name": format!("Customer {:04}", h % 10_000), "tier": (["gold", "silver", "bronze"][(h % 3) as usize]), "open_tickets": h % 5}),
        ),
        "doc_indexer" => (
            "Indexes a document and returns its chunk count.",
            json!({"type": "object", "properties": {"document_id": {"type": "string", "minLength": 1, "examples": ["DOC-42"]}, "content": {"type": "string"}}, "required": ["document_id"], "additionalProperties": false}),
            |p, h| json!({"document_id": s(p, "document_id"), "chunks": 1 + h % 40, "indexed": true}),
        ),
        "aml_checker" => (
            "Screens a transaction for anti-money-laundering risk.",
            json!({"type": "object", "properties": {"account_id": {"type": "string", "minLength": 1, "examples": ["ACC-7"]}, "amount": {"type": "number", "minimum": 0, "examples": [2500.0]}}, "required": ["account_id", "amount"], "additionalProperties": false}),
            |p, h| json!({"account_id": s(p, "account_id"), "risk_score": (h % 100) as f64 / 100.0, "flagged": h % 10 == 0}),
        ),
        "kyc_screen" => (
            "Screens a person against know-your-customer lists.",
            json!({"type": "object", "properties": {"customer_name": {"type": "string", "minLength": 1, "examples": ["Ada Lovelace"]}, "country": {"type": "string", "examples": ["GB"]}}, "required": ["customer_name"], "additionalProperties": false}),
            |p, h| json!({"customer_name": s(p, "customer_name"), "status": if h % 20 == 0 { "review" } else { "clear" }, "lists_checked": 12}),
        ),
        "fx_quote" => (
            "Quotes a foreign-exchange rate.",
            json!({"type": "object", "properties": {"base": {"type": "string", "minLength": 3, "maxLength": 3, "examples": ["USD"]}, "quote": {"type": "string", "minLength": 3, "maxLength": 3, "examples": ["EUR"]}}, "required": ["base", "quote"], "additionalProperties": false}),
            |p, h| json!({"pair": format!("{}/{}", s(p, "base"), s(p, "quote")), "rate": 0.5 + (h % 1000) as f64 / 1000.0}),
        ),
        _ => (
            "Quotes a stock price.",
            json!({"type": "object", "properties": {"symbol": {"type": "string", "minLength": 1, "examples": ["ACME"]}}, "required": ["symbol"], "additionalProperties": false}),
            |p, h| json!({"symbol": s(p, "symbol"), "price": 10.0 + (h % 50_000) as f64 / 100.0, "currency": "USD"}),
        ),
    }
}

/// The demo tools, configured.
pub fn demo_tools(config: &DemoToolConfig) -> Vec<RegisteredTool> {
    DEMO_TOOLS
        .iter()
        .map(|name| {
            let (description, schema, respond) = definition(name);
            let base = config.per_tool.get(*name).copied().unwrap_or(config.latency);
            let scale = if config.time_scale.is_finite() && config.time_scale > 0.0 {
                config.time_scale
            } else {
                0.0
            };
            let spec = UniversalTool::new(format!("demo.{name}"), description, schema);
            RegisteredTool::new_async(
                spec,
                DemoTool {
                    delay: base.mul_f64(scale),
                    respond,
                },
            )
            .unwrap_or_else(|e| unreachable!("demo tool is valid: {e}"))
        })
        .collect()
}
