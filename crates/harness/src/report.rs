//! What one run produced, whatever its scenario: the one way a summary is rendered, named,
//! written and judged.
//!
//! The runtime scenarios produce a [`Summary`]; `endpoint_load` an [`EndpointSummary`] (it
//! measures a model server, so its figures differ). [`Report`] holds either, and everything a
//! caller does with a run's result goes through it: the readable table ([`Report::render`]),
//! the file name under a directory ([`Report::default_path`]), the atomic JSON write
//! ([`Report::write`]) and the verdict a `--gate` enforces ([`Report::verdict`]).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::endpoint::EndpointSummary;
use crate::summary::Summary;

/// The summary of one run (schema version 1 either way).
#[derive(Debug, Clone)]
pub enum Report {
    /// A scenario that drives the runtime (in process or over HTTP).
    Runtime(Box<Summary>),
    /// endpoint_load: a model endpoint driven directly.
    Endpoint(Box<EndpointSummary>),
}

impl Report {
    pub fn scenario(&self) -> &str {
        match self {
            Report::Runtime(s) => &s.scenario,
            Report::Endpoint(s) => s.scenario,
        }
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        match self {
            Report::Runtime(s) => s.started_at,
            Report::Endpoint(s) => s.started_at,
        }
    }

    /// Whether the figures came from a simulated model.
    pub fn simulated(&self) -> bool {
        match self {
            Report::Runtime(s) => s.simulated,
            Report::Endpoint(s) => s.simulated,
        }
    }

    /// The runtime scenario's summary, if this is one.
    pub fn runtime(&self) -> Option<&Summary> {
        match self {
            Report::Runtime(s) => Some(s),
            Report::Endpoint(_) => None,
        }
    }

    /// Records the CPU profile taken during the run (files beside the summary).
    pub fn set_cpu_profile(&mut self, links: crate::summary::CpuProfileLinks) {
        match self {
            Report::Runtime(s) => s.cpu_profile = Some(links),
            Report::Endpoint(s) => s.cpu_profile = Some(links),
        }
    }

    /// A readable table (with the KPI verdicts of a runtime scenario).
    pub fn render(&self) -> String {
        match self {
            Report::Runtime(s) => s.render(),
            Report::Endpoint(s) => s.render(),
        }
    }

    /// `<scenario>-<UTC start, e.g. 20261130T001500Z>.json` under `dir`.
    pub fn default_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!(
            "{}-{}.json",
            self.scenario(),
            self.started_at().format("%Y%m%dT%H%M%SZ")
        ))
    }

    /// Writes the summary JSON to `path` atomically (a temporary file renamed into place), making
    /// its directory.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        match self {
            Report::Runtime(s) => write_json(s, path),
            Report::Endpoint(s) => write_json(s, path),
        }
    }

    /// What `--gate` enforces: every KPI of a runtime scenario passed; every request of
    /// endpoint_load succeeded. The error says what failed.
    pub fn verdict(&self) -> Result<(), String> {
        match self {
            Report::Runtime(s) if !s.passed => {
                let failed: Vec<&str> = s
                    .kpis
                    .iter()
                    .filter(|k| k.pass == Some(false))
                    .map(|k| k.name.as_str())
                    .collect();
                Err(format!("KPI failed: {}", failed.join(", ")))
            }
            Report::Endpoint(s) if s.requests.failed > 0 => {
                Err(format!("{} of {} requests failed", s.requests.failed, s.requests.total))
            }
            _ => Ok(()),
        }
    }
}

impl From<Summary> for Report {
    fn from(s: Summary) -> Self {
        Report::Runtime(Box::new(s))
    }
}

impl From<EndpointSummary> for Report {
    fn from(s: EndpointSummary) -> Self {
        Report::Endpoint(Box::new(s))
    }
}

/// Writes `value` as pretty JSON to `path` atomically ([`write_atomic`]).
fn write_json(value: &impl Serialize, path: &Path) -> std::io::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, renamed into place, so a
/// reader never sees half a file (the temporary file is removed when the write fails). Creates
/// the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}
