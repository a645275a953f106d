//! Flags of the simulated model and demo tools, shared by every subcommand that runs turns.

use std::path::PathBuf;
use std::time::Duration;

use aether_runtime::model::{ProfileSet, SimConfig};
use aether_runtime::tools::demo::DemoToolConfig;
use clap::Args;

use crate::exit::CliError;

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Multiplies every simulated delay (model and demo tools); 0 removes them.
    #[arg(long, default_value_t = 1.0, value_name = "F", allow_negative_numbers = true)]
    pub time_scale: f64,

    /// Fixed simulated model latency per call, replacing the model profile's (still scaled).
    #[arg(long, value_name = "N")]
    pub model_latency_ms: Option<u64>,

    /// Latency of every demo tool (crm_lookup, doc_indexer, ...); default 100.
    #[arg(long, value_name = "N")]
    pub tool_latency_ms: Option<u64>,

    /// Seed of the simulator's jitter and error injection.
    #[arg(long, default_value_t = 42, value_name = "N")]
    pub seed: u64,

    /// Share of model calls (0 to 1) that fail with a simulated 429, 500 or timeout.
    #[arg(long, default_value_t = 0.0, value_name = "RATE", allow_negative_numbers = true)]
    pub error_rate: f64,

    /// TOML file of model profiles laid over the built-in ones (see `aether models`).
    #[arg(long, value_name = "PATH", env = "AETHER_SIM_PROFILES")]
    pub sim_profiles: Option<PathBuf>,
}

impl SimArgs {
    pub fn validate(&self) -> Result<(), CliError> {
        if !self.time_scale.is_finite() || self.time_scale < 0.0 {
            return Err(CliError::usage(format!(
                "--time-scale must be a number >= 0, got {}",
                self.time_scale
            )));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(CliError::usage(format!(
                "--error-rate must be between 0 and 1, got {}",
                self.error_rate
            )));
        }
        Ok(())
    }

    pub fn profiles(&self) -> Result<ProfileSet, CliError> {
        match &self.sim_profiles {
            Some(p) => ProfileSet::builtin_with_overrides(p).map_err(|e| CliError::usage(e.to_string())),
            None => Ok(ProfileSet::builtin()),
        }
    }

    pub fn sim_config(&self) -> Result<SimConfig, CliError> {
        self.validate()?;
        Ok(SimConfig {
            time_scale: self.time_scale,
            fixed_latency: self.model_latency_ms.map(Duration::from_millis),
            seed: self.seed,
            error_rate: self.error_rate,
            profiles: self.profiles()?,
            ..SimConfig::default()
        })
    }

    pub fn demo_config(&self) -> DemoToolConfig {
        let mut d = DemoToolConfig {
            time_scale: self.time_scale,
            ..DemoToolConfig::default()
        };
        if let Some(ms) = self.tool_latency_ms {
            d.latency = Duration::from_millis(ms);
        }
        d
    }
}

/// Splits a comma list, dropping blanks: `"a, b,,c"` → `[a, b, c]`.
pub fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}
