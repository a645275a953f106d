//! `--provider`, `--base-url`, `--api-key-env`: which model answers. Shared by `chat` and `perf run`.

use std::sync::Arc;

use aether_runtime::model::gemini::GeminiProvider;
use aether_runtime::model::openai::OpenAiProvider;
use aether_runtime::model::{EndpointConfig, ModelProvider, NamedProvider};
use clap::{Args, ValueEnum};

use crate::exit::CliError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// The simulated model in process (the embedded default).
    Simulated,
    /// Any OpenAI-compatible chat-completions endpoint (OpenAI, Azure OpenAI, DeepSeek, vLLM,
    /// llama.cpp server, Ollama, `aether sim-llm`).
    Openai,
    /// Google's Gemini API (`generateContent`), or `aether sim-llm` at `/v1beta`.
    Gemini,
}

#[derive(Args, Debug, Clone)]
pub struct ProviderArgs {
    /// Which model provider answers.
    #[arg(long, value_enum, default_value = "simulated")]
    pub provider: ProviderKind,

    /// Base URL up to the API version. Default: `https://api.openai.com/v1` for openai,
    /// `https://generativelanguage.googleapis.com/v1beta` for gemini.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// Environment variable holding the API key (never printed or logged); unset: no key sent.
    /// Default `OPENAI_API_KEY` for openai, `GEMINI_API_KEY` for gemini.
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,

    /// Retries on 429 and 5xx (exponential backoff with jitter, honouring Retry-After).
    /// Default 3; 0 for endpoint_load, so that failures are not hidden.
    #[arg(long)]
    pub max_retries: Option<u32>,
}

impl ProviderArgs {
    /// The base URL in effect.
    pub fn url(&self) -> String {
        self.base_url.clone().unwrap_or_else(|| match self.provider {
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com/v1beta".into(),
            _ => "https://api.openai.com/v1".into(),
        })
    }

    /// The real provider to register, or `None` for the simulated one.
    pub fn build(&self) -> Result<Option<NamedProvider>, CliError> {
        if self.provider == ProviderKind::Simulated {
            return Ok(None);
        }
        let url = self.url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "--base-url `{url}` must start with http:// or https://"
            )));
        }
        let key_env = self.api_key_env.clone().unwrap_or_else(|| {
            if self.provider == ProviderKind::Gemini {
                "GEMINI_API_KEY"
            } else {
                "OPENAI_API_KEY"
            }
            .into()
        });
        let cfg = EndpointConfig {
            api_key: std::env::var(&key_env).ok().filter(|k| !k.is_empty()),
            max_retries: self.max_retries.unwrap_or(3),
            ..EndpointConfig::new(&url)
        };
        let provider: Arc<dyn ModelProvider> = match self.provider {
            ProviderKind::Gemini => Arc::new(GeminiProvider::new(cfg).map_err(|e| CliError::failed(e.to_string()))?),
            _ => Arc::new(OpenAiProvider::new(cfg).map_err(|e| CliError::failed(e.to_string()))?),
        };
        Ok(Some((provider.info().name.clone(), provider)))
    }
}
