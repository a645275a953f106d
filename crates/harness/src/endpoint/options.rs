//! What an endpoint_load run is: its arrivals, SLOs, prompts and provider, built from a resolved
//! scenario ([`options`]), the one place its inputs are checked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aether_runtime::model::{ModelProvider, NamedProvider};
use serde::Serialize;

use super::prompts::{read_dataset, synthetic_prompts, DatasetRow};
use crate::error::HarnessError;
use crate::scenario::{ScenarioConfig, Stop};

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Open loop: `rate` requests per second, gamma gaps with shape `burstiness` (1 = Poisson).
    Rate { rate: f64, burstiness: f64 },
    /// Closed loop: `concurrency` requests always in flight.
    Closed { concurrency: usize },
}

/// Service-level objectives for goodput (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
}

/// An endpoint_load run.
pub struct EndpointOptions {
    pub provider: Arc<dyn ModelProvider>,
    pub model: String,
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    pub arrival: Arrival,
    pub prompts: Vec<DatasetRow>,
    pub slo: Slo,
    pub seed: u64,
    /// Requests sent one by one before the measured run and left out of every figure (loads
    /// weights, fills caches, opens connections).
    pub warmup: u64,
    /// The time series' interval.
    pub interval: Duration,
}

/// What endpoint_load sends, beyond what every scenario resolves (requests, duration, warm-up,
/// concurrency, rate, model, seed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointShape {
    /// Shape of the gamma arrival gaps with a rate: 1 is Poisson, below 1 burstier, above 1 more
    /// regular.
    pub burstiness: f64,
    /// Prompt length in tokens of the synthetic prompt (when no dataset is given).
    pub prompt_tokens: u32,
    /// Output tokens to ask for (max_tokens).
    pub output_tokens: Option<u32>,
    /// JSONL of prompts: `{"prompt": "...", "output_tokens": 128}` per line.
    pub dataset: Option<PathBuf>,
    pub slo: Slo,
}

impl Default for EndpointShape {
    fn default() -> Self {
        Self {
            burstiness: 1.0,
            prompt_tokens: 128,
            output_tokens: None,
            dataset: None,
            slo: Slo::default(),
        }
    }
}

/// The endpoint_load run that `cfg` and `shape` describe, against `provider` (a model endpoint:
/// the simulated provider in this process is refused, it would measure nothing but itself).
pub fn options(
    cfg: &ScenarioConfig,
    shape: &EndpointShape,
    provider: Option<NamedProvider>,
) -> Result<EndpointOptions, HarnessError> {
    let invalid = |m: String| Err(HarnessError::InvalidInput(m));
    let Some((_, provider)) = provider else {
        return invalid(
            "endpoint_load drives a model endpoint: give --provider openai|gemini --base-url URL (e.g. an \
             `aether sim-llm`), or --provider local --model-path FILE"
                .into(),
        );
    };
    if !(shape.burstiness.is_finite() && shape.burstiness > 0.0) {
        return invalid(format!("--burstiness must be positive, got {}", shape.burstiness));
    }
    if shape.prompt_tokens == 0 {
        return invalid("--prompt-tokens must be at least 1".into());
    }
    let prompts = match &shape.dataset {
        Some(p) => read_dataset(p).map_err(HarnessError::InvalidInput)?,
        None => synthetic_prompts(shape.prompt_tokens, shape.output_tokens),
    };
    let (requests, duration) = match cfg.stop {
        Stop::Iterations(n) => (Some(n), None),
        Stop::DurationSecs(s) => (None, Some(Duration::from_secs_f64(s))),
    };
    Ok(EndpointOptions {
        provider,
        model: cfg.model.clone(),
        requests,
        duration,
        arrival: match cfg.rate {
            Some(rate) => Arrival::Rate {
                rate,
                burstiness: shape.burstiness,
            },
            None => Arrival::Closed {
                concurrency: cfg.concurrency,
            },
        },
        prompts,
        slo: shape.slo,
        seed: cfg.seed,
        warmup: cfg.warmup,
        interval: Duration::from_secs(1),
    })
}
