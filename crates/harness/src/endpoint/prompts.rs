//! endpoint_load's prompts: synthetic ones of a given length, or a JSONL dataset.

/// One prompt of a dataset file (JSONL: `{"prompt": "...", "output_tokens": 128}`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct DatasetRow {
    pub prompt: String,
    #[serde(default)]
    pub output_tokens: Option<u32>,
}

/// `n` prompts of about `tokens` tokens each, asking for `output_tokens`.
pub fn synthetic_prompts(tokens: u32, output_tokens: Option<u32>) -> Vec<DatasetRow> {
    // Real prose, not one word repeated: a real model answers a repeated word with an empty reply.
    // Common English words are about one token each in the usual tokenizers.
    const PASSAGE: &str = "the keeper of the old lighthouse climbed the stairs every evening to light the lamp \
        while the sea below grew dark and the wind carried rain across the rocks where ships had broken \
        long ago so he wrote each night in a small book what he saw and heard and who passed by";
    let mut prompt = String::from("Continue this story:");
    for word in PASSAGE
        .split_whitespace()
        .cycle()
        .take(tokens.saturating_sub(4).max(1) as usize)
    {
        prompt.push(' ');
        prompt.push_str(word);
    }
    vec![DatasetRow { prompt, output_tokens }]
}

/// Reads a JSONL dataset; the error names the line.
pub fn read_dataset(path: &std::path::Path) -> Result<Vec<DatasetRow>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--dataset: cannot read `{}`: {e}", path.display()))?;
    let rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            aether_contracts::from_json_str::<DatasetRow>(l)
                .map_err(|e| format!("--dataset `{}` line {}: {e}", path.display(), i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Err(format!("--dataset `{}` has no prompts", path.display()));
    }
    Ok(rows)
}
