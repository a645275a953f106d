//! Logs, traces and metrics of every command: the `tracing` subscriber (logs to stderr,
//! `--log-level`, `--log-format`; JSON lines carry the current trace's ids, `json_log`) and, when
//! asked for, the OpenTelemetry export of the runtime's spans and GenAI metrics.
//!
//! **Off by default.** Export starts only when an endpoint is given: `--otlp-endpoint URL`, or the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `_TRACES_ENDPOINT` / `_METRICS_ENDPOINT`). An
//! embedded run never looks for a collector. `OTEL_SDK_DISABLED=true` turns it off whatever else
//! is set (the Rust SDK does not read that variable; this module does).
//!
//! **The standard variables** are honoured through the SDK: `OTEL_SERVICE_NAME` (default
//! `aether`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` / `_ARG`, `OTEL_BSP_MAX_QUEUE_SIZE`
//! (and the other `OTEL_BSP_*`), `OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_COMPRESSION`,
//! `OTEL_METRIC_EXPORT_INTERVAL`. `OTEL_EXPORTER_OTLP_PROTOCOL` (or `--otlp-protocol`):
//! `http/protobuf` (the default), `http/json` or `grpc` (tonic, on a runtime of its own: `grpc`).
//!
//! **Never in a turn's way.** Spans go to the SDK's batch processor behind a counted gate
//! (`queue`): a bounded queue drained by its own thread, which exports with a blocking HTTP
//! client (an async client on that thread panics without a runtime). A full queue drops spans,
//! counted; after a failed export the gate drops them at once for a back-off window (1 s,
//! doubling to 10 s while the collector stays away), so a dead collector costs no full queue
//! and one probe batch per window, not a batch a second; a turn never waits. On exit the queue
//! is flushed within [`FLUSH_DEADLINE`].
//!
//! **Which spans.** OpenTelemetry spans made directly by the runtime, the tool executor and the
//! server (`aether_contracts::trace`, enabled here once the global provider is set): `create_agent`,
//! `invoke_agent`, `chat`, `execute_tool` after the GenAI conventions (`aether_runtime::telemetry`)
//! and `aether serve`'s server span, which continues an incoming `traceparent`
//! (`aether_server::trace_context`). Message content only with
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`. Outgoing model requests and MCP
//! calls carry the current span's `traceparent`. Logs are not exported.

mod backoff;
mod grpc;
mod json_log;
mod meter;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use aether_runtime::meter::GenAiMeter;

use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::exit::CliError;

/// How long the exit waits for the last spans to leave.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(3);

/// The export queue's bound when `OTEL_BSP_MAX_QUEUE_SIZE` is not set (the SDK's default).
const DEFAULT_QUEUE: usize = 2048;

/// Where spans and metrics go, from the flags and the standard variables.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// The traces endpoint (`…/v1/traces`); `None`: no span export.
    pub endpoint: Option<String>,
    /// The metrics endpoint (`…/v1/metrics`); `None`: no metric export.
    pub metrics_endpoint: Option<String>,
    pub protocol: Protocol,
    /// The span queue's bound (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub queue: usize,
}

/// Reads the settings: flags first, then `OTEL_*`. `env` looks a variable up (the process's
/// environment in use; a map in tests).
pub fn settings(
    endpoint_flag: Option<&str>,
    protocol_flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ExportSettings, CliError> {
    let set = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let protocol = match protocol_flag
        .map(str::to_owned)
        .or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
    {
        None | Some("http/protobuf") => Protocol::HttpBinary,
        Some("http/json") => Protocol::HttpJson,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            return Err(CliError::usage(format!(
                "OTLP protocol `{other}`: expected http/protobuf, http/json or grpc"
            )))
        }
    };
    let queue = match set("OTEL_BSP_MAX_QUEUE_SIZE") {
        None => DEFAULT_QUEUE,
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            CliError::usage(format!(
                "OTEL_BSP_MAX_QUEUE_SIZE `{v}`: expected a whole number of spans above 0"
            ))
        })?,
    };
    let off = ExportSettings {
        endpoint: None,
        metrics_endpoint: None,
        protocol,
        queue,
    };
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(off);
    }
    // A flag, like the generic variable, names the collector: the signal's path is added; a
    // signal's own variable is used as is.
    let signal = |own: &str, path: &str| match endpoint_flag {
        Some(base) => Some(signal_url(base, path, protocol)),
        None => set(own).or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT").map(|b| signal_url(&b, path, protocol))),
    };
    let exporter_off = |name: &str| set(name).is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let endpoint =
        signal("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "traces").filter(|_| !exporter_off("OTEL_TRACES_EXPORTER"));
    let metrics_endpoint =
        signal("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "metrics").filter(|_| !exporter_off("OTEL_METRICS_EXPORTER"));
    for url in endpoint.iter().chain(metrics_endpoint.iter()) {
        check_url(url)?;
    }
    Ok(ExportSettings {
        endpoint,
        metrics_endpoint,
        ..off
    })
}

/// An endpoint is an absolute http(s) URL with a host.
fn check_url(url: &str) -> Result<(), CliError> {
    let bad = |why: &str| Err(CliError::usage(format!("OTLP endpoint `{url}`: {why}")));
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return bad("expected an http:// or https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => return bad("an IPv6 host needs its closing `]`"),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return bad("expected a host after the scheme (e.g. http://localhost:4318)");
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return bad("the port is not a number from 0 to 65535");
    }
    Ok(())
}

/// `http://collector:4318` → `http://collector:4318/v1/traces` (the generic endpoint's rule over
/// HTTP); over gRPC the endpoint is the collector itself (`http://collector:4317`).
fn signal_url(base: &str, signal: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => base.to_owned(),
        _ => format!("{}/v1/{signal}", base.trim_end_matches('/')),
    }
}

/// The installed subscriber's export side; [`shutdown`](Self::shutdown) it before exiting.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
    meter: Option<Arc<dyn GenAiMeter>>,
}

impl Telemetry {
    /// The GenAI meter to install in the runtime, when metrics are exported.
    pub fn meter(&self) -> Option<Arc<dyn GenAiMeter>> {
        self.meter.clone()
    }

    /// Flushes the queued spans and metrics (within [`FLUSH_DEADLINE`]) and stops the exporters.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown_with_timeout(FLUSH_DEADLINE) {
                eprintln!("warning: OpenTelemetry: the last spans were not all delivered: {e}");
            }
        }
        if let Some(m) = self.meters {
            if let Err(e) = m.shutdown_with_timeout(FLUSH_DEADLINE) {
                eprintln!("warning: OpenTelemetry: the last metrics were not delivered: {e}");
            }
        }
    }
}

/// Builds the OTLP exporter `$kind` (`SpanExporter` or `MetricExporter`) for `$url` and hands it
/// to `$use` as `$e`: over gRPC on the exporters' own runtime (`grpc`), else over HTTP in the
/// protocol asked for (the two are different types, hence a macro).
macro_rules! with_exporter {
    ($kind:ident, $url:expr, $protocol:expr, $grpc:expr, $bad:expr, |$e:ident| $use:expr) => {
        match ($protocol, $grpc) {
            (Protocol::Grpc, Some(rt)) => {
                let $e = grpc::OnRuntime::build(rt, || {
                    opentelemetry_otlp::$kind::builder()
                        .with_tonic()
                        .with_endpoint($url)
                        .build()
                })
                .map_err($bad)?;
                $use
            }
            (protocol, _) => {
                let $e = opentelemetry_otlp::$kind::builder()
                    .with_http()
                    .with_endpoint($url)
                    .with_protocol(protocol)
                    .build()
                    .map_err($bad)?;
                $use
            }
        }
    };
}

/// Installs logging, and the span export when `export` has an endpoint. Call it before the
/// async runtime starts (the exporter's blocking HTTP client must not be built inside it).
pub fn init(level: &str, json: bool, export: &ExportSettings) -> Result<Telemetry, CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| CliError::usage(format!("--log-level `{level}` is not a valid level or filter: {e}")))?;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let logs = match json {
        true => logs
            .fmt_fields(json_log::fields())
            .event_format(json_log::JsonWithTrace(
                tracing_subscriber::fmt::format().with_target(false).json(),
            ))
            .with_filter(filter)
            .boxed(),
        false => logs.with_filter(filter).boxed(),
    };
    let exporting = export.endpoint.is_some() || export.metrics_endpoint.is_some();
    if exporting {
        // The exporters' reqwest 0.13 has no TLS crypto provider of its own.
        aether_mcp::ensure_tls_provider();
    }
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "aether".to_owned());
    // gRPC exports run on a runtime of their own (see `grpc`).
    let grpc = match (export.protocol, exporting) {
        (Protocol::Grpc, true) => Some(
            grpc::runtime()
                .map_err(|e| CliError::failed(format!("cannot start the OTLP gRPC exporter's runtime: {e}")))?,
        ),
        _ => None,
    };
    let resource = || {
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service.clone())
            .build()
    };
    let bad = |url: &str| {
        let url = url.to_owned();
        move |e: opentelemetry_otlp::ExporterBuildError| CliError::usage(format!("OTLP exporter for `{url}`: {e}"))
    };
    let (meters, meter) = match &export.metrics_endpoint {
        None => (None, None),
        Some(url) => {
            let builder = SdkMeterProvider::builder().with_resource(resource());
            let provider = with_exporter!(MetricExporter, url, export.protocol, &grpc, bad(url), |e| builder
                .with_periodic_exporter(e))
            .build();
            let meter: Arc<dyn GenAiMeter> = Arc::new(meter::OtlpMeter::new(
                &opentelemetry::metrics::MeterProvider::meter(&provider, "aether"),
            ));
            (Some(provider), Some(meter))
        }
    };
    let provider = match &export.endpoint {
        None => None,
        Some(url) => {
            let queue = with_exporter!(SpanExporter, url, export.protocol, &grpc, bad(url), |e| queue::counted(
                e,
                export.queue
            ));
            let provider = SdkTracerProvider::builder()
                .with_resource(resource())
                .with_span_processor(queue)
                .build();
            // The spans are OpenTelemetry spans made directly (`aether_contracts::trace`), from
            // the global provider's tracer: not `tracing` spans through a bridge, which cost the
            // turn path more per span (see scripts/otel-overhead.sh and the README's table).
            opentelemetry::global::set_tracer_provider(provider.clone());
            aether_contracts::trace::enable();
            // Message content on chat spans, only when asked for (it may hold personal data).
            aether_runtime::telemetry::set_capture_content(
                std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
                    .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")),
            );
            Some(provider)
        }
    };
    tracing_subscriber::registry().with(logs).init();
    Ok(Telemetry {
        provider,
        meters,
        meter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_given_and_sdk_disabled_wins() {
        assert_eq!(settings(None, None, with(&[])).unwrap().endpoint, None);
        let s = settings(None, None, with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://c:4318/v1/traces"));
        let s = settings(
            None,
            None,
            with(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.endpoint.as_deref(),
            Some("http://c:4318/custom"),
            "the signal's own variable is used as is"
        );
        let s = settings(
            Some("http://flag:4318"),
            None,
            with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x")]),
        )
        .unwrap();
        assert_eq!(
            s.endpoint.as_deref(),
            Some("http://flag:4318/v1/traces"),
            "the flag wins"
        );
        let off = settings(Some("http://flag:4318"), None, with(&[("OTEL_SDK_DISABLED", "TRUE")])).unwrap();
        assert_eq!(off.endpoint, None, "OTEL_SDK_DISABLED turns export off");
        assert_eq!(off.metrics_endpoint, None);
        let s = settings(Some("http://flag:4318/"), None, with(&[])).unwrap();
        assert_eq!(s.metrics_endpoint.as_deref(), Some("http://flag:4318/v1/metrics"));
        assert_eq!(s.queue, 2048);
        let s = settings(
            None,
            None,
            with(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ]),
        )
        .unwrap();
        assert_eq!(s.metrics_endpoint, None, "a traces endpoint alone exports no metrics");
        assert_eq!(s.queue, 64);
        let s = settings(Some("http://c:4318"), None, with(&[("OTEL_METRICS_EXPORTER", "none")])).unwrap();
        assert!(
            s.endpoint.is_some() && s.metrics_endpoint.is_none(),
            "OTEL_METRICS_EXPORTER=none"
        );
    }

    #[test]
    fn protocols_are_checked() {
        assert_eq!(settings(None, None, with(&[])).unwrap().protocol, Protocol::HttpBinary);
        assert_eq!(
            settings(None, Some("http/json"), with(&[])).unwrap().protocol,
            Protocol::HttpJson
        );
        let g = settings(
            None,
            None,
            with(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ]),
        )
        .unwrap();
        assert_eq!(g.protocol, Protocol::Grpc);
        assert_eq!(
            g.endpoint.as_deref(),
            Some("http://c:4317"),
            "over gRPC the collector itself"
        );
        assert!(settings(None, Some("carrier-pigeon"), with(&[])).is_err());
        assert!(settings(Some("ftp://x"), None, with(&[])).is_err());
        for bad in [
            "http://",
            "http:///v1",
            "http://host:port",
            "http://host:99999",
            "http://a b",
        ] {
            let e = settings(Some(bad), None, with(&[])).unwrap_err();
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
        assert!(settings(Some("http://[::1]:4318"), None, with(&[])).is_ok());
        let e = settings(None, None, with(&[("OTEL_BSP_MAX_QUEUE_SIZE", "lots")])).unwrap_err();
        assert!(e.to_string().contains("OTEL_BSP_MAX_QUEUE_SIZE"), "{e}");
    }
}
