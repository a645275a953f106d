//! Summaries read back from disk, for `perf compare`, `report`, `merge`, `gate` and `history`.
//!
//! Both schema versions load: 2 (what this version writes) and 1 (older summaries: the same
//! field names, without time series or compact histograms). Anything else is refused with the
//! file's name and what is wrong with it: not found, not JSON (a truncated file says so), not a
//! perf summary, an unknown schema version.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::kpi::Kpi;
use crate::stats::{DurationHist, SerialisedHist};
use crate::summary::READABLE_VERSIONS;
use crate::timeline::Timeline;

/// Why a file is not a summary this version reads.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not valid JSON ({why})")]
    NotJson { path: PathBuf, why: String },
    #[error("`{path}` is not a perf summary: {why}")]
    NotSummary { path: PathBuf, why: String },
    #[error("`{path}` has schema_version {found}; this version reads {readable}")]
    Version {
        path: PathBuf,
        found: u64,
        readable: String,
    },
}

/// A summary file, loaded and checked.
#[derive(Debug, Clone)]
pub struct StoredSummary {
    pub path: PathBuf,
    pub version: u32,
    pub value: Value,
}

/// Reads and checks the summary at `path`.
pub fn read_summary(path: &Path) -> Result<StoredSummary, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_summary(path, &text)
}

/// Checks `text` as the summary of `path` (the name goes into errors).
pub fn parse_summary(path: &Path, text: &str) -> Result<StoredSummary, ReadError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ReadError::NotJson {
        path: path.to_owned(),
        why: if e.is_eof() {
            format!("it ends early, at line {} column {}: truncated?", e.line(), e.column())
        } else {
            e.to_string()
        },
    })?;
    let not = |why: &str| ReadError::NotSummary {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let version = value
        .get("schema_version")
        .ok_or_else(|| not("no schema_version"))?
        .as_u64()
        .ok_or_else(|| not("schema_version is not a number"))?;
    if !READABLE_VERSIONS.iter().any(|v| u64::from(*v) == version) {
        return Err(ReadError::Version {
            path: path.to_owned(),
            found: version,
            readable: READABLE_VERSIONS.map(|v| v.to_string()).join(" and "),
        });
    }
    if value.get("scenario").and_then(Value::as_str).is_none() {
        return Err(not("no scenario"));
    }
    if value.get("requests").is_none() && value.get("latency_ms").is_none() {
        return Err(not("neither requests nor latency_ms"));
    }
    Ok(StoredSummary {
        path: path.to_owned(),
        version: version as u32,
        value,
    })
}

impl StoredSummary {
    pub fn scenario(&self) -> &str {
        self.value.get("scenario").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn simulated(&self) -> bool {
        self.value.get("simulated").and_then(Value::as_bool).unwrap_or(false)
    }

    /// endpoint_load's summary (it measures a model server, not the runtime).
    pub fn is_endpoint(&self) -> bool {
        self.value.get("arrival").is_some() || self.scenario() == "endpoint_load"
    }

    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.value
            .get("started_at")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    }

    /// The number at a JSON pointer (`/latency_ms/p99`).
    pub fn number(&self, pointer: &str) -> Option<f64> {
        self.value.pointer(pointer).and_then(Value::as_f64)
    }

    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.value.pointer(pointer).and_then(Value::as_str)
    }

    pub fn kpis(&self) -> Vec<Kpi> {
        self.value
            .get("kpis")
            .and_then(|k| serde_json::from_value(k.clone()).ok())
            .unwrap_or_default()
    }

    /// The time series (schema 2).
    pub fn timeline(&self) -> Option<Timeline> {
        self.value
            .get("timeline")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .filter(|t: &Timeline| !t.rows.is_empty())
    }

    /// The histogram `name` of `histograms` (either schema's form).
    pub fn histogram(&self, name: &str) -> Result<Option<DurationHist>, String> {
        let Some(h) = self.value.pointer(&format!("/histograms/{name}")) else {
            return Ok(None);
        };
        let h: SerialisedHist = serde_json::from_value(h.clone()).map_err(|e| format!("histograms.{name}: {e}"))?;
        DurationHist::deserialise(&h)
            .map(Some)
            .map_err(|e| format!("histograms.{name}: {e}"))
    }

    /// The names of the histograms it holds.
    pub fn histogram_names(&self) -> Vec<String> {
        self.value
            .get("histograms")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A short label: the file's name without `.json`.
    pub fn label(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StoredSummary, ReadError> {
        parse_summary(Path::new("runs/x.json"), text)
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let e = parse(r#"{"schema_version": 2, "scenario": "burst_load", "requests": {"tot"#).unwrap_err();
        assert!(
            e.to_string().contains("runs/x.json") && e.to_string().contains("truncated"),
            "{e}"
        );
        let e = parse(r#"{"schema_version": 9, "scenario": "a", "requests": {"total": 1}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`runs/x.json` has schema_version 9; this version reads 1 and 2"
        );
        let e = parse(r#"{"hello": 1}"#).unwrap_err();
        assert!(e.to_string().contains("not a perf summary: no schema_version"), "{e}");
        let ok =
            parse(r#"{"schema_version": 1, "scenario": "a", "requests": {"total": 1}, "latency_ms": {"p99": 2.5}}"#)
                .unwrap();
        assert_eq!(
            (ok.version, ok.scenario(), ok.number("/latency_ms/p99")),
            (1, "a", Some(2.5))
        );
        assert!(ok.timeline().is_none());
    }
}
