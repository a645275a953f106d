//! `--provider`, `--base-url`, `--api-key-env`: which model answers. Shared by `chat` and `perf run`.

use std::sync::Arc;

use aether_runtime::model::openai::{OpenAiConfig, OpenAiProvider};
use aether_runtime::model::NamedProvider;
use clap::{Args, ValueEnum};

use crate::exit::CliError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// The simulated model in process (the embedded default).
    Simulated,
    /// Any OpenAI-compatible chat-completions endpoint (OpenAI, Azure OpenAI, DeepSeek, vLLM,
    /// llama.cpp server, Ollama, `aether sim-llm`).
    Openai,
}

#[derive(Args, Debug, Clone)]
pub struct ProviderArgs {
    /// Which model provider answers.
    #[arg(long, value_enum, default_value = "simulated")]
    pub provider: ProviderKind,

    /// Base URL of an OpenAI-compatible endpoint, up to `/v1`.
    #[arg(long, value_name = "URL", default_value = "https://api.openai.com/v1")]
    pub base_url: String,

    /// Environment variable holding the API key (never printed or logged). Unset: no key sent.
    #[arg(long, value_name = "NAME", default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,

    /// Retries on 429 and 5xx (exponential backoff with jitter, honouring Retry-After).
    /// Default 3; 0 for endpoint_load, so that failures are not hidden.
    #[arg(long)]
    pub max_retries: Option<u32>,
}

impl ProviderArgs {
    /// The real provider to register, or `None` for the simulated one.
    pub fn build(&self) -> Result<Option<NamedProvider>, CliError> {
        match self.provider {
            ProviderKind::Simulated => Ok(None),
            ProviderKind::Openai => {
                if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
                    return Err(CliError::usage(format!(
                        "--base-url `{}` must start with http:// or https://",
                        self.base_url
                    )));
                }
                let cfg = OpenAiConfig {
                    api_key: std::env::var(&self.api_key_env).ok().filter(|k| !k.is_empty()),
                    max_retries: self.max_retries.unwrap_or(3),
                    ..OpenAiConfig::new(&self.base_url)
                };
                let p = OpenAiProvider::new(cfg).map_err(|e| CliError::failed(e.to_string()))?;
                Ok(Some(("openai".into(), Arc::new(p))))
            }
        }
    }
}
