//! Token counting with tiktoken's BPE tables, built once per process and shared.

use std::sync::OnceLock;

use serde::Deserialize;
use tiktoken_rs::CoreBPE;

/// Which BPE encoding to count with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
pub enum Tokenizer {
    #[default]
    #[serde(rename = "cl100k_base")]
    Cl100k,
    #[serde(rename = "o200k_base")]
    O200k,
}

impl std::fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cl100k => "cl100k_base",
            Self::O200k => "o200k_base",
        })
    }
}

fn bpe(tokenizer: Tokenizer) -> Option<&'static CoreBPE> {
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    match tokenizer {
        Tokenizer::Cl100k => CL100K.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref(),
        Tokenizer::O200k => O200K.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref(),
    }
}

/// Counts the tokens of `text`. Should the tables ever fail to load, falls back to the usual
/// estimate of one token per four bytes rather than failing a turn.
pub fn count(tokenizer: Tokenizer, text: &str) -> u32 {
    if text.is_empty() {
        return 0;
    }
    match bpe(tokenizer) {
        Some(b) => b.encode_ordinary(text).len() as u32,
        None => text.len().div_ceil(4) as u32,
    }
}

/// Builds the tables now, so the first turn does not pay for it.
pub fn warm_up(tokenizer: Tokenizer) {
    let _ = bpe(tokenizer);
}
