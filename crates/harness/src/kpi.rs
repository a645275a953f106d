//! The plan's KPI targets, overridable from a TOML file, and their verdicts for one run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::scenario::ScenarioKind;

/// Targets from the performance plan (section 1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KpiTargets {
    pub latency_p50_s: f64,
    pub latency_p95_s: f64,
    pub error_rate_max: f64,
    pub fanout_ratio_max: f64,
    pub throughput_rps_min: f64,
    pub rss_drift_mb_per_hour_max: f64,
    pub session_reuse_min: f64,
    /// Drift is judged only over at least this many seconds of samples after warm-up.
    pub min_drift_window_s: f64,
}

impl Default for KpiTargets {
    fn default() -> Self {
        Self {
            latency_p50_s: 2.5,
            latency_p95_s: 4.0,
            error_rate_max: 0.01,
            fanout_ratio_max: 1.5,
            throughput_rps_min: 25.0,
            rss_drift_mb_per_hour_max: 50.0,
            session_reuse_min: 0.8,
            min_drift_window_s: 60.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KpiFile {
    kpis: KpiTargets,
}

impl KpiTargets {
    /// Reads `[kpis]` from a TOML file; keys left out keep the plan's values.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read KPI file `{}`: {e}", path.display()))?;
        toml::from_str::<KpiFile>(&text)
            .map(|f| f.kpis)
            .map_err(|e| format!("invalid KPI file `{}`: {e}", path.display()))
    }
}

/// One verdict. `pass` is `null` when the run cannot judge it (with a `note` saying why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kpi {
    pub name: String,
    pub target: String,
    pub value: Option<f64>,
    pub unit: String,
    pub pass: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The figures KPIs are judged on.
pub struct KpiInputs {
    pub scenario: String,
    pub kind: ScenarioKind,
    pub succeeded: u64,
    pub latency_p50_s: f64,
    pub latency_p95_s: f64,
    pub error_rate: f64,
    pub fanout_ratio: Option<f64>,
    pub throughput_rps: f64,
    pub drift_bytes_per_hour: Option<f64>,
    pub drift_window_s: f64,
    pub agents_reuse_ratio: f64,
    /// multimodal_echo's share of attachments acknowledged intact.
    pub fidelity: Option<f64>,
}

fn kpi(name: &str, target: String, value: Option<f64>, unit: &str, pass: Option<bool>, note: Option<String>) -> Kpi {
    Kpi {
        name: name.into(),
        target,
        value,
        unit: unit.into(),
        pass,
        note,
    }
}

pub fn evaluate(t: &KpiTargets, i: &KpiInputs) -> Vec<Kpi> {
    let mut v = Vec::new();
    let no_success = (i.succeeded == 0).then(|| "no request succeeded".to_owned());
    let latency = |name, target: f64, value: f64| {
        let judged = no_success.is_none();
        kpi(
            name,
            format!("<= {target}"),
            judged.then_some(value),
            "s",
            judged.then_some(value <= target),
            no_success.clone(),
        )
    };
    v.push(latency("latency_p50", t.latency_p50_s, i.latency_p50_s));
    v.push(latency("latency_p95", t.latency_p95_s, i.latency_p95_s));
    v.push(kpi(
        "error_rate",
        format!("<= {}", t.error_rate_max),
        Some(i.error_rate),
        "ratio",
        Some(i.error_rate <= t.error_rate_max),
        None,
    ));
    if i.kind == ScenarioKind::ToolRegression {
        v.push(match i.fanout_ratio {
            Some(r) => kpi(
                "tool_fanout_ratio",
                format!("<= {}", t.fanout_ratio_max),
                Some(r),
                "x",
                Some(r <= t.fanout_ratio_max),
                None,
            ),
            None => kpi(
                "tool_fanout_ratio",
                format!("<= {}", t.fanout_ratio_max),
                None,
                "x",
                None,
                Some("a phase had no successful request".into()),
            ),
        });
    }
    if i.scenario == "burst_load" {
        v.push(kpi(
            "throughput",
            format!(">= {}", t.throughput_rps_min),
            Some(i.throughput_rps),
            "req/s",
            Some(i.throughput_rps >= t.throughput_rps_min),
            None,
        ));
    }
    let drift_mb = i.drift_bytes_per_hour.map(|b| b / 1e6);
    v.push(match drift_mb {
        Some(d) if i.drift_window_s >= t.min_drift_window_s => kpi(
            "rss_drift",
            format!("<= {}", t.rss_drift_mb_per_hour_max),
            Some(d),
            "MB/h",
            Some(d <= t.rss_drift_mb_per_hour_max),
            None,
        ),
        _ => kpi(
            "rss_drift",
            format!("<= {}", t.rss_drift_mb_per_hour_max),
            drift_mb,
            "MB/h",
            None,
            Some(format!(
                "not judged: {:.0} s of samples after warm-up, {:.0} s needed (use --duration)",
                i.drift_window_s, t.min_drift_window_s
            )),
        ),
    });
    if let Some(f) = i.fidelity {
        v.push(kpi(
            "multimodal_fidelity",
            "= 1".into(),
            Some(f),
            "ratio",
            Some(f >= 1.0),
            None,
        ));
    }
    if i.kind == ScenarioKind::MultiUserHandoff {
        v.push(kpi(
            "session_reuse",
            format!(">= {}", t.session_reuse_min),
            Some(i.agents_reuse_ratio),
            "ratio",
            Some(i.agents_reuse_ratio >= t.session_reuse_min),
            Some("share of requests served by an agent and runner that already existed".into()),
        ));
    }
    v
}
