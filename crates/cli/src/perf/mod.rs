//! `aether perf`: run the performance plan's scenarios, list them, compare two summaries, and
//! the readers of summaries (`analyse`: report, merge, history; `gate`).

mod analyse;
mod args;
mod gate;
mod versus;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aether_harness::endpoint::{EndpointShape, Slo};
use aether_harness::kpi::KpiTargets;
use aether_harness::scenario::{self, Mode, Overrides, ScenarioConfig, ScenarioKind, CATALOG};
use aether_harness::{run_scenario, Choices, HarnessError, Progress, Report, RunOptions};
use aether_runtime::meter::GenAiMeter;
use aether_runtime::model::NamedProvider;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exit::CliError;
use crate::framework_args;
use crate::provider_args::ProviderKind;
use crate::sim_args::comma_list;
use crate::store_args::StoreKind;
use aether_harness::http_target::HttpTarget;
use aether_server::profiling::Profiling;
pub use args::PerfCommand;
use args::{CompareArgs, EndpointArgs, ListArgs, ModeArg, RunArgs};

/// A temporary directory for the default SQLite file of a perf run, removed afterwards.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self(std::env::temp_dir().join(format!("aether-perf-{}-{nanos:x}", std::process::id())))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to `path` atomically, making its directory.
fn write_text(path: &Path, text: &str) -> Result<(), CliError> {
    aether_harness::report::write_atomic(path, text.as_bytes())
        .map_err(|e| CliError::failed(format!("cannot write `{}`: {e}", path.display())))
}

/// The progress bar on stderr; when stderr is a terminal it also shows the last interval's
/// throughput, P99 and errors.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn begin(&self, label: &str, total: Option<u64>) {
        self.0.reset();
        match total {
            Some(n) => {
                self.0.set_length(n);
                self.0.set_style(
                    ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
            }
            None => {
                self.0.unset_length();
                self.0.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>28} {spinner} {pos} requests {per_sec} elapsed {elapsed} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
            }
        }
        self.0.set_prefix(label.to_owned());
        self.0.set_message("");
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }

    fn recent(&self, r: &aether_harness::run::Recent) {
        use std::io::IsTerminal as _;
        if std::io::stderr().is_terminal() {
            self.0.set_message(live_line(r));
        }
    }
}

fn overrides(a: &RunArgs, tools: Option<Vec<String>>) -> Overrides {
    Overrides {
        iterations: a.iterations,
        duration_s: a.duration.map(|d| d.as_secs_f64()),
        warmup: a.warmup,
        concurrency: a.concurrency,
        rate: a.endpoint.request_rate.or(a.rate),
        model: a.model.clone(),
        tools,
        prompt: a.prompt.clone(),
        system_prompt: a.system_prompt.clone(),
        time_scale: Some(a.sim.time_scale),
        model_latency_ms: a.sim.model_latency_ms,
        tool_latency_ms: a.sim.tool_latency_ms,
        seed: Some(a.sim.seed),
        error_rate: Some(a.sim.error_rate),
        session_idle_ttl_s: a.session_idle_ttl,
        archive_ttl_s: a.archive_ttl,
        mode: a.mode.map(|m| match m {
            ModeArg::Sync => Mode::Sync,
            ModeArg::Streaming => Mode::Streaming,
        }),
        approval_think_ms: a.approval_think_ms,
        multimodal_payload: a.multimodal_payload.clone(),
        framework: a.framework.framework.clone(),
    }
}

/// The scenarios to run, resolved with the flags: `names` (gate's `--scenarios`), else
/// `--scenario`, else every scenario that applies (`--all`).
pub(crate) fn resolve(a: &RunArgs, names: Option<&[String]>) -> Result<Vec<ScenarioConfig>, CliError> {
    a.sim.validate()?;
    a.framework.chosen()?;
    let tools = a.tools.as_deref().map(comma_list);
    let find = |name: &str| {
        scenario::find(name)
            .ok_or_else(|| CliError::usage(format!("unknown scenario `{name}` (see `aether perf list`)")))
    };
    let specs: Vec<_> = match (names, &a.scenario) {
        (Some(names), _) => names.iter().map(|n| find(n)).collect::<Result<_, _>>()?,
        (None, Some(name)) => vec![find(name)?],
        (None, None) => CATALOG
            .iter()
            .filter(|spec| {
                let applies = !spec.kind.drives_endpoint() || a.model_endpoint();
                if !applies && !a.quiet {
                    eprintln!(
                        "{}: skipped (it drives a model endpoint: give --provider to include it)",
                        spec.name
                    );
                }
                applies
            })
            .collect(),
    };
    specs
        .into_iter()
        .map(|spec| {
            let t = if (a.all || names.is_some()) && spec.tools.is_empty() {
                None
            } else {
                tools.clone()
            };
            let cfg = ScenarioConfig::resolve(spec, &overrides(a, t)).map_err(|e| CliError::usage(e.to_string()))?;
            match a.segment {
                Some(seg) => cfg.segment(seg).map_err(|e| CliError::usage(e.to_string())),
                None => Ok(cfg),
            }
        })
        .collect()
}

fn output_path(a: &RunArgs, report: &Report) -> PathBuf {
    match (&a.output, a.all) {
        (Some(dir), true) => report.default_path(dir),
        (Some(file), false) => file.clone(),
        (None, _) => report.default_path(Path::new("logs/perf")),
    }
}

impl RunArgs {
    /// `--provider` names a model endpoint, not the simulated model.
    fn model_endpoint(&self) -> bool {
        self.provider.provider != ProviderKind::Simulated
    }
}

/// endpoint_load's prompts, arrival shape and SLOs.
fn endpoint_shape(e: &EndpointArgs) -> EndpointShape {
    EndpointShape {
        burstiness: e.burstiness,
        prompt_tokens: e.prompt_tokens,
        output_tokens: e.output_tokens,
        dataset: e.dataset.clone(),
        slo: Slo {
            ttft_ms: e.slo_ttft_ms,
            tpot_ms: e.slo_tpot_ms,
            e2e_ms: e.slo_e2e_ms,
        },
    }
}

/// The providers of this run, each built once: the runtime scenarios' (`None`: the simulated
/// model), and, when endpoint_load is among the scenarios, the endpoint's, whose retries default
/// to 0 so that its failures are counted, not hidden.
struct Providers {
    runtime: Option<NamedProvider>,
    endpoint: Option<NamedProvider>,
}

impl Providers {
    fn build(a: &RunArgs, configs: &[ScenarioConfig]) -> Result<Self, CliError> {
        let kinds = |endpoint: bool| configs.iter().any(|c| c.kind.drives_endpoint() == endpoint);
        let runtime = if kinds(false) { a.provider.build()? } else { None };
        let endpoint = if kinds(true) {
            let mut args = a.provider.clone();
            args.max_retries = Some(a.provider.max_retries.unwrap_or(0));
            args.build()?
        } else {
            None
        };
        Ok(Self { runtime, endpoint })
    }

    fn of(&self, kind: ScenarioKind) -> Option<NamedProvider> {
        match kind.drives_endpoint() {
            true => self.endpoint.clone(),
            false => self.runtime.clone(),
        }
    }
}

/// `meter`: where the in-process runtime's GenAI metrics go (the OTLP export), if anywhere.
pub async fn run(cmd: PerfCommand, meter: Option<Arc<dyn GenAiMeter>>) -> Result<(), CliError> {
    match cmd {
        PerfCommand::List(a) => list(a),
        PerfCommand::Compare(a) => compare(a),
        PerfCommand::Run(a) => run_scenarios(*a, meter).await,
        PerfCommand::Report(a) => analyse::report(a),
        PerfCommand::Merge(a) => analyse::merge(a),
        PerfCommand::History(a) => analyse::history(a),
        PerfCommand::Gate(a) => gate::gate(*a, meter).await,
        PerfCommand::Versus(a) => versus::versus(a).await,
    }
}

/// What every scenario of one invocation shares: KPI targets, providers, store, target, the
/// progress bar. Built once; [`Runner::run`] runs one scenario with it.
pub(crate) struct Runner {
    kpis: KpiTargets,
    mcp: Vec<aether_mcp::McpServerConfig>,
    profiles: aether_runtime::model::ProfileSet,
    store: aether_store::StoreConfig,
    shape: EndpointShape,
    providers: Providers,
    target: Option<Arc<dyn aether_harness::target::Target>>,
    progress: Arc<dyn Progress>,
    tool_call_samples: u32,
    per_call_session_samples: u32,
    interval: Duration,
    meter: Option<Arc<dyn GenAiMeter>>,
    /// Holds the default SQLite file; removed when the runner goes.
    _scratch: ScratchDir,
}

impl Runner {
    /// Checks the flags against every scenario of `configs`, builds the providers and connects
    /// the target. `dry_run`: prints the plan and returns `None`.
    pub(crate) async fn new(
        a: &RunArgs,
        configs: &[ScenarioConfig],
        meter: Option<Arc<dyn GenAiMeter>>,
    ) -> Result<Option<Self>, CliError> {
        let kpis = match &a.kpi_file {
            Some(p) => KpiTargets::from_file(p).map_err(CliError::usage)?,
            None => KpiTargets::default(),
        };
        let mcp = a.mcp.configs()?;
        // Before anything is connected; every run checks the same rules again.
        for cfg in configs {
            aether_harness::check_options(&Choices {
                kind: cfg.kind,
                remote_target: a.target.is_some(),
                mcp: &mcp,
                model_endpoint: a.model_endpoint(),
            })
            .map_err(|e| CliError::usage(e.to_string()))?;
        }
        let profiles = a.sim.profiles()?;
        let scratch = ScratchDir::new();
        let store = a.store.config(StoreKind::Memory, || scratch.0.join("sessions.db"))?;
        let shape = endpoint_shape(&a.endpoint);
        let providers = Providers::build(a, configs)?;
        if a.dry_run {
            for cfg in configs {
                let plan = match cfg.kind.drives_endpoint() {
                    true => serde_json::json!({
                        "dry_run": true, "scenario": cfg, "endpoint": shape, "base_url": a.provider.url(),
                    }),
                    false => serde_json::json!({
                        "dry_run": true, "scenario": cfg, "agent_config": aether_harness::run::agent_config(cfg, &cfg.tools),
                        "kpis": kpis, "store": format!("{store:?}"),
                    }),
                };
                println!("{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
            }
            eprintln!("dry run: nothing was executed");
            return Ok(None);
        }
        let target: Option<Arc<dyn aether_harness::target::Target>> = match &a.target {
            Some(url) => {
                let t = HttpTarget::new(url, a.api_key.clone())
                    .map_err(CliError::usage)?
                    .with_admin_key(a.admin_key.clone());
                t.check().await.map_err(CliError::usage)?;
                t.check_admin().await.map_err(CliError::usage)?;
                Some(Arc::new(t))
            }
            None => None,
        };
        let draw = match a.quiet {
            true => ProgressDrawTarget::hidden(),
            false => ProgressDrawTarget::stderr(),
        };
        Ok(Some(Self {
            kpis,
            mcp,
            profiles,
            store,
            shape,
            providers,
            target,
            progress: Arc::new(Bar(ProgressBar::with_draw_target(None, draw))),
            tool_call_samples: a.tool_call_samples,
            per_call_session_samples: a.per_call_session_samples,
            interval: Duration::from_secs_f64(a.interval),
            meter,
            _scratch: scratch,
        }))
    }

    /// Runs one scenario.
    pub(crate) async fn run(&self, cfg: ScenarioConfig) -> Result<Report, CliError> {
        let opts = RunOptions {
            kpis: self.kpis.clone(),
            profiles: self.profiles.clone(),
            store: self.store.clone(),
            provider: self.providers.of(cfg.kind),
            target: self.target.clone(),
            mcp: self.mcp.clone(),
            tool_call_samples: self.tool_call_samples,
            per_call_session_samples: self.per_call_session_samples,
            endpoint: self.shape.clone(),
            interval: self.interval,
            provenance: provenance(),
            meter: self.meter.clone(),
            frameworks: Some(framework_args::hook()),
            ..RunOptions::new(cfg)
        };
        run_scenario(opts, Arc::clone(&self.progress))
            .await
            .map_err(|e| match e {
                HarnessError::InvalidInput(m) => CliError::usage(m),
                HarnessError::Runtime(m) => CliError::failed(m),
            })
    }
}

/// The progress bar's figures of the last interval.
fn live_line(r: &aether_harness::run::Recent) -> String {
    format!(
        "· last interval: {:.0} req/s, p99 {}, {} error{}, {} in flight",
        r.requests_per_s,
        r.p99_ms.map_or("–".to_owned(), |p| format!("{p:.1} ms")),
        r.errors,
        if r.errors == 1 { "" } else { "s" },
        r.in_flight
    )
}

/// The build, the machine and the command line, for a summary.
fn provenance() -> aether_harness::summary::Provenance {
    aether_harness::summary::Provenance {
        git_commit: env!("AETHER_GIT_COMMIT").to_owned(),
        command: redacted_command_line(std::env::args()),
        frameworks: framework_args::versions(),
        ..aether_harness::summary::Provenance::current()
    }
}

/// The command line with the values of key flags (`--api-key`, `--admin-key`, …) hidden.
fn redacted_command_line(args: impl Iterator<Item = String>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("***".into());
            hide_next = false;
            continue;
        }
        match arg.split_once('=') {
            Some((flag, _)) if flag.starts_with("--") && flag.contains("key") => out.push(format!("{flag}=***")),
            _ => {
                hide_next = arg.starts_with("--") && arg.contains("key") && !arg.contains('=');
                out.push(arg);
            }
        }
    }
    out.join(" ")
}

/// Finishes the CPU profile of a run and writes it beside its summary at `summary`.
async fn write_cpu_profile(
    p: Profiling,
    summary: &Path,
    remote: bool,
    scenario: &str,
) -> Result<aether_harness::summary::CpuProfileLinks, CliError> {
    let title = format!("aether perf run --scenario {scenario}");
    let profile = tokio::task::spawn_blocking(move || p.finish(&title))
        .await
        .map_err(|e| CliError::failed(e.to_string()))?
        .map_err(|e| CliError::failed(e.to_string()))?;
    let stem = summary
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    let (svg, pb) = (format!("{stem}.cpu.svg"), format!("{stem}.cpu.pb"));
    let dir = summary.parent().unwrap_or(Path::new(""));
    aether_harness::report::write_atomic(&dir.join(&svg), &profile.flamegraph_svg)
        .and_then(|()| aether_harness::report::write_atomic(&dir.join(&pb), &profile.pprof))
        .map_err(|e| {
            CliError::failed(format!(
                "cannot write the CPU profile beside `{}`: {e}",
                summary.display()
            ))
        })?;
    Ok(aether_harness::summary::CpuProfileLinks {
        flamegraph: svg,
        pprof: pb,
        samples: profile.samples,
        frequency_hz: aether_server::profiling::FREQUENCY_HZ as u32,
        note: if remote {
            "the harness process only (the server's profile: GET /debug/pprof/profile with an admin key)".into()
        } else {
            "this process: the runtime and the load generator together (both run in it)".into()
        },
    })
}

/// Writes `report` to `path` (the error names the file).
pub(crate) fn write_report(report: &Report, path: &Path) -> Result<(), CliError> {
    report
        .write(path)
        .map_err(|e| CliError::failed(format!("cannot write the summary to `{}`: {e}", path.display())))
}

async fn run_scenarios(a: RunArgs, meter: Option<Arc<dyn GenAiMeter>>) -> Result<(), CliError> {
    if a.scenario.is_none() && !a.all {
        return Err(CliError::usage(
            "give --scenario NAME (see `aether perf list`) or --all",
        ));
    }
    let configs = resolve(&a, None)?;
    let Some(runner) = Runner::new(&a, &configs, meter).await? else {
        return Ok(());
    };
    let mut failed_gates = Vec::new();
    for cfg in configs {
        let name = cfg.scenario.clone();
        let profiling = match a.cpu_profile {
            true => Some(Profiling::start().map_err(|e| CliError::failed(e.to_string()))?),
            false => None,
        };
        let mut report = runner.run(cfg).await?;
        let path = output_path(&a, &report);
        if let Some(p) = profiling {
            let links = write_cpu_profile(p, &path, a.target.is_some(), &name).await?;
            report.set_cpu_profile(links);
        }
        write_report(&report, &path)?;
        let html = match a.report {
            true => Some(analyse::write_report_beside(&path)?),
            false => None,
        };
        if !a.quiet {
            println!("{}", report.render());
            println!("   summary: {}", path.display());
            if let Some(h) = html {
                println!("   report: {}", h.display());
            }
        }
        if let Err(why) = report.verdict() {
            failed_gates.push(format!("{name} ({why})"));
        }
    }
    if a.gate && !failed_gates.is_empty() {
        return Err(CliError::failed(format!(
            "gate failed for: {}",
            failed_gates.join(", ")
        )));
    }
    Ok(())
}

fn list(a: ListArgs) -> Result<(), CliError> {
    if let Some(path) = &a.output {
        let json = serde_json::to_string_pretty(CATALOG).map_err(|e| CliError::failed(e.to_string()))?;
        write_text(path, &json)?;
    }
    if !a.quiet {
        print_catalog();
    }
    Ok(())
}

fn print_catalog() {
    println!(
        "{:<20} {:>6} {:>5} {:<20} {:>8} {:>8} {:<17} {:<10} DESCRIPTION",
        "SCENARIO", "ITER", "CONC", "SESSION MODE", "CLEANUP", "MAX LAT", "MODEL", "TOOLS"
    );
    for s in CATALOG {
        let mode = serde_json::to_value(s.session_mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let tools = if s.tools.is_empty() {
            "-".to_owned()
        } else {
            format!("{} tools", s.tools.len())
        };
        println!(
            "{:<20} {:>6} {:>5} {:<20} {:>8} {:>7}s {:<17} {:<10} {}",
            s.name,
            s.iterations,
            s.concurrency,
            mode,
            s.cleanup_agent,
            s.max_expected_latency_s,
            s.model,
            tools,
            s.description
        );
    }
    println!(
        "\ntool_regression's tools: {}",
        scenario::DEFAULT_FANOUT_TOOLS.join(",")
    );
    println!("multi_user_handoff tags every request with metadata tenant=enterprise_pool.");
}

/// Reads a summary (either schema); a bad file is a usage error naming it.
pub(crate) fn read_summary(p: &Path) -> Result<aether_harness::stored::StoredSummary, CliError> {
    aether_harness::stored::read_summary(p).map_err(|e| CliError::usage(e.to_string()))
}

fn compare(a: CompareArgs) -> Result<(), CliError> {
    let base = read_summary(&a.base)?.value;
    let new = read_summary(&a.new)?.value;
    let md = aether_harness::compare::markdown(
        &base,
        &new,
        &a.base.display().to_string(),
        &a.new.display().to_string(),
        a.fail_on_regression,
    );
    if let Some(path) = &a.output {
        write_text(path, &md)?;
    }
    if !a.quiet {
        println!("{md}");
    }
    if let Some(pct) = a.fail_on_regression {
        let r = aether_harness::compare::regressions(&base, &new, pct);
        if !r.is_empty() {
            let names: Vec<&str> = r.iter().map(|d| d.label).collect();
            return Err(CliError::failed(format!(
                "{} metric(s) regressed by more than {pct} %: {}",
                r.len(),
                names.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_in_a_summary_hides_keys() {
        let args = [
            "aether",
            "perf",
            "run",
            "--target",
            "http://h:1",
            "--api-key",
            "sekret",
            "--admin-key=ops",
            "--kpi-file",
            "k.toml",
        ]
        .map(String::from);
        assert_eq!(
            redacted_command_line(args.into_iter()),
            "aether perf run --target http://h:1 --api-key *** --admin-key=*** --kpi-file k.toml"
        );
    }

    #[test]
    fn the_live_line_names_each_figure() {
        let r = aether_harness::run::Recent {
            requests_per_s: 812.4,
            p99_ms: Some(12.34),
            errors: 1,
            in_flight: 7,
        };
        assert_eq!(
            live_line(&r),
            "· last interval: 812 req/s, p99 12.3 ms, 1 error, 7 in flight"
        );
        let idle = aether_harness::run::Recent {
            p99_ms: None,
            errors: 0,
            ..r
        };
        assert!(live_line(&idle).contains("p99 –, 0 errors"));
    }
}
