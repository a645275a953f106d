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
        // Not judged: no value either, so that a slope over a few seconds is never printed
        // beside its target as if it were measured (the raw fit stays under `resources`).
        _ => kpi(
            "rss_drift",
            format!("<= {}", t.rss_drift_mb_per_hour_max),
            None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KpiInputs {
        KpiInputs {
            scenario: "latency_smoke".into(),
            kind: ScenarioKind::Standard,
            succeeded: 10,
            latency_p50_s: 1.0,
            latency_p95_s: 3.0,
            error_rate: 0.0,
            fanout_ratio: None,
            throughput_rps: 100.0,
            drift_bytes_per_hour: None,
            drift_window_s: 0.0,
            agents_reuse_ratio: 0.0,
            fidelity: None,
        }
    }

    fn verdict<'k>(v: &'k [Kpi], name: &str) -> &'k Kpi {
        v.iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("no {name} in {v:?}"))
    }

    #[test]
    fn targets_are_inclusive_bounds() {
        let t = KpiTargets::default();
        let mut i = inputs();
        i.latency_p50_s = t.latency_p50_s;
        i.latency_p95_s = t.latency_p95_s + 0.001;
        i.error_rate = t.error_rate_max;
        let v = evaluate(&t, &i);
        assert_eq!(
            verdict(&v, "latency_p50").pass,
            Some(true),
            "equal to the target passes"
        );
        assert_eq!(verdict(&v, "latency_p95").pass, Some(false));
        assert_eq!(verdict(&v, "error_rate").pass, Some(true));
        assert_eq!(verdict(&v, "latency_p95").target, "<= 4");
    }

    #[test]
    fn no_success_means_latency_is_not_judged() {
        let mut i = inputs();
        i.succeeded = 0;
        i.error_rate = 1.0;
        let v = evaluate(&KpiTargets::default(), &i);
        let p50 = verdict(&v, "latency_p50");
        assert_eq!((p50.pass, p50.value), (None, None));
        assert_eq!(p50.note.as_deref(), Some("no request succeeded"));
        assert_eq!(verdict(&v, "error_rate").pass, Some(false));
    }

    #[test]
    fn drift_is_judged_only_over_a_long_enough_window() {
        let t = KpiTargets::default();
        let mut i = inputs();
        i.drift_bytes_per_hour = Some(80e6);
        i.drift_window_s = t.min_drift_window_s - 1.0;
        let short = evaluate(&t, &i);
        assert_eq!(verdict(&short, "rss_drift").pass, None);
        assert_eq!(
            verdict(&short, "rss_drift").value,
            None,
            "a figure that is not judged is not shown beside its target"
        );
        assert!(verdict(&short, "rss_drift")
            .note
            .as_deref()
            .unwrap()
            .contains("not judged"));
        i.drift_window_s = t.min_drift_window_s;
        let long = evaluate(&t, &i);
        let d = verdict(&long, "rss_drift");
        assert_eq!((d.pass, d.value), (Some(false), Some(80.0)), "80 MB/h against 50");
    }

    #[test]
    fn scenario_specific_kpis_appear_only_where_they_apply() {
        let t = KpiTargets::default();
        let names = |i: &KpiInputs| evaluate(&t, i).into_iter().map(|k| k.name).collect::<Vec<_>>();
        assert!(!names(&inputs()).contains(&"throughput".to_owned()));

        let mut burst = inputs();
        burst.scenario = "burst_load".into();
        burst.throughput_rps = t.throughput_rps_min - 1.0;
        assert_eq!(verdict(&evaluate(&t, &burst), "throughput").pass, Some(false));

        let mut tools = inputs();
        tools.kind = ScenarioKind::ToolRegression;
        assert_eq!(
            verdict(&evaluate(&t, &tools), "tool_fanout_ratio").pass,
            None,
            "no ratio measured"
        );
        tools.fanout_ratio = Some(1.2);
        assert_eq!(verdict(&evaluate(&t, &tools), "tool_fanout_ratio").pass, Some(true));

        let mut media = inputs();
        media.fidelity = Some(0.99);
        assert_eq!(verdict(&evaluate(&t, &media), "multimodal_fidelity").pass, Some(false));

        let mut handoff = inputs();
        handoff.kind = ScenarioKind::MultiUserHandoff;
        handoff.agents_reuse_ratio = 0.8;
        assert_eq!(verdict(&evaluate(&t, &handoff), "session_reuse").pass, Some(true));
    }

    #[test]
    fn a_kpi_file_overrides_only_the_keys_it_names_and_rejects_unknown_ones() {
        let dir = std::env::temp_dir().join(format!("aether-kpi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[kpis]\nlatency_p50_s = 1.5\n").unwrap();
        let t = KpiTargets::from_file(&good).unwrap();
        assert_eq!(t.latency_p50_s, 1.5);
        assert_eq!(t.latency_p95_s, KpiTargets::default().latency_p95_s);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[kpis]\nlatency_p50 = 1.5\n").unwrap();
        let e = KpiTargets::from_file(&bad).unwrap_err();
        assert!(e.contains("latency_p50"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
