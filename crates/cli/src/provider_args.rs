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
    /// A GGUF model run in process by llama.cpp (`--model-path FILE`; needs a build with
    /// `--features local-llm`).
    Local,
}

#[derive(Args, Debug, Clone)]
pub struct ProviderArgs {
    /// Which model provider answers.
    #[arg(long, value_enum, default_value = "simulated", env = "AETHER_PROVIDER")]
    pub provider: ProviderKind,

    /// Base URL up to the API version. Default: `https://api.openai.com/v1` for openai,
    /// `https://generativelanguage.googleapis.com/v1beta` for gemini.
    #[arg(long, value_name = "URL", env = "AETHER_BASE_URL")]
    pub base_url: Option<String>,

    /// Environment variable holding the API key (never printed or logged); unset: no key sent.
    /// Default `OPENAI_API_KEY` for openai, `GEMINI_API_KEY` for gemini.
    #[arg(long, value_name = "NAME", env = "AETHER_API_KEY_ENV")]
    pub api_key_env: Option<String>,

    /// Retries on 429 and 5xx (exponential backoff with jitter, honouring Retry-After).
    /// Default 3; 0 for endpoint_load, so that failures are not hidden.
    #[arg(long, env = "AETHER_MAX_RETRIES")]
    pub max_retries: Option<u32>,

    /// Failed calls in a row (retries included) that open the model endpoint's circuit breaker:
    /// calls then fail at once for --breaker-cooldown-ms, after which one trial call may pass.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_threshold: u32,

    /// How long an open circuit breaker refuses calls before it lets a trial call through.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub breaker_cooldown_ms: u64,

    /// The GGUF model file of `--provider local`.
    #[arg(long, value_name = "FILE", env = "AETHER_MODEL_PATH")]
    pub model_path: Option<std::path::PathBuf>,

    /// `--provider local`: CPU threads for llama.cpp (default: all cores).
    #[arg(long, value_name = "N")]
    pub local_threads: Option<usize>,

    /// `--provider local`: sequences decoded together by continuous batching; more requests queue.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub local_slots: usize,

    /// `--provider local`: context per sequence in tokens (prompt + answer).
    #[arg(long, value_name = "TOKENS", default_value_t = 2048)]
    pub local_context: u32,
}

impl ProviderArgs {
    /// The base URL in effect.
    pub fn url(&self) -> String {
        if self.provider == ProviderKind::Local {
            let path = self.model_path.as_deref().unwrap_or(std::path::Path::new("?"));
            return format!("local:{}", path.display());
        }
        self.base_url.clone().unwrap_or_else(|| match self.provider {
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com/v1beta".into(),
            _ => "https://api.openai.com/v1".into(),
        })
    }

    /// The real provider to register, or `None` for the simulated one.
    pub fn build(&self) -> Result<Option<NamedProvider>, CliError> {
        match self.provider {
            ProviderKind::Simulated => return Ok(None),
            ProviderKind::Local => return self.build_local().map(Some),
            ProviderKind::Openai | ProviderKind::Gemini => {}
        }
        if self.model_path.is_some() {
            return Err(CliError::usage("--model-path is only for --provider local"));
        }

        let url = self.url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "--base-url `{url}` must start with http:// or https://"
            )));
        }
        if let Err(e) = aether_runtime::model::check_base_url(&url) {
            return Err(CliError::usage(format!("--base-url `{url}` is not a valid URL: {e}")));
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
            breaker_threshold: self.breaker_threshold,
            breaker_cooldown: std::time::Duration::from_millis(self.breaker_cooldown_ms),
            ..EndpointConfig::new(&url)
        };
        let provider: Arc<dyn ModelProvider> = match self.provider {
            ProviderKind::Gemini => Arc::new(GeminiProvider::new(cfg).map_err(|e| CliError::failed(e.to_string()))?),
            _ => Arc::new(OpenAiProvider::new(cfg).map_err(|e| CliError::failed(e.to_string()))?),
        };
        Ok(Some((provider.info().name.clone(), provider)))
    }
}

impl ProviderArgs {
    #[cfg(feature = "local-llm")]
    fn build_local(&self) -> Result<NamedProvider, CliError> {
        use aether_runtime::model::local::{LocalConfig, LocalLoadError, LocalProvider};
        let Some(path) = &self.model_path else {
            return Err(CliError::usage(
                "--provider local needs --model-path FILE (a GGUF model)",
            ));
        };
        if self.base_url.is_some() {
            return Err(CliError::usage(
                "--base-url is not used by --provider local (give --model-path)",
            ));
        }
        let mut cfg = LocalConfig::new(path);
        if let Some(t) = self.local_threads {
            cfg.threads = t;
        }
        cfg.slots = self.local_slots;
        cfg.context_per_slot = self.local_context;
        let provider = LocalProvider::load(cfg).map_err(|e| match e {
            LocalLoadError::Config(_) | LocalLoadError::Missing(_) => CliError::usage(e.to_string()),
            LocalLoadError::Load { .. } => CliError::failed(e.to_string()),
        })?;
        let provider: Arc<dyn ModelProvider> = Arc::new(provider);
        Ok((provider.info().name.clone(), provider))
    }

    #[cfg(not(feature = "local-llm"))]
    fn build_local(&self) -> Result<NamedProvider, CliError> {
        Err(CliError::usage(
            "--provider local needs a build with the `local-llm` feature: \
             cargo build --release -p aether-cli --features local-llm (needs cmake and libclang)",
        ))
    }
}

impl ProviderArgs {
    /// Registers the chosen real provider on `builder` as the default one; with the simulated
    /// model the builder is returned as it is. Also returns the provider, for reporting.
    pub fn apply(
        &self,
        builder: aether_runtime::RuntimeBuilder,
    ) -> Result<(aether_runtime::RuntimeBuilder, Option<NamedProvider>), CliError> {
        let provider = self.build()?;
        let builder = match provider.clone() {
            Some((name, p)) => builder.provider(name.clone(), p).default_provider(name),
            None => builder,
        };
        Ok((builder, provider))
    }
}
