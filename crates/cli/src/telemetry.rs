//! Logs and traces of every command: the `tracing` subscriber (logs to stderr, `--log-level`,
//! `--log-format`) and, when asked for, the OpenTelemetry export of the runtime's `gen_ai` spans.
//!
//! **Off by default.** Export starts only when an endpoint is given: `--otlp-endpoint URL`, or the
//! standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`. An embedded run
//! never looks for a collector. `OTEL_SDK_DISABLED=true` turns it off whatever else is set (the
//! Rust SDK does not read that variable; this module does).
//!
//! **The standard variables** are honoured through the SDK: `OTEL_SERVICE_NAME` (default
//! `aether`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` / `_ARG`, `OTEL_BSP_MAX_QUEUE_SIZE`
//! (and the other `OTEL_BSP_*`), `OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_COMPRESSION`.
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (or `--otlp-protocol`): `http/protobuf` (the default) or
//! `http/json`; `grpc` is refused with a clear error (not built in).
//!
//! **Never in a turn's way.** Spans go to the SDK's batch processor: a bounded queue drained by
//! its own thread, which exports with a blocking HTTP client (an async client on that thread
//! panics without a runtime). A full queue drops spans; a turn never waits. On exit the queue is
//! flushed within [`FLUSH_DEADLINE`].
//!
//! Which spans: target `aether::gen_ai` (the runtime's `invoke_agent`, `chat`, `execute_tool`,
//! `create_agent`), named and attributed after the OpenTelemetry GenAI semantic conventions (see
//! `aether_runtime::telemetry`), and target `aether::http` (`aether serve`'s server span, which
//! continues an incoming `traceparent`; see `aether_server::trace_context`). Logs are not
//! exported.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::exit::CliError;

/// How long the exit waits for the last spans to leave.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(3);

/// The target of the runtime's GenAI spans.
const GEN_AI_TARGET: &str = aether_runtime::telemetry::TARGET;

/// Where spans go, from the flags and the standard variables.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// The traces endpoint (`…/v1/traces`); `None`: no export.
    pub endpoint: Option<String>,
    pub protocol: Protocol,
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
        Some("grpc") => {
            return Err(CliError::usage(
                "OTLP protocol `grpc` is not built into aether: use http/protobuf (the default) or http/json",
            ))
        }
        Some(other) => {
            return Err(CliError::usage(format!(
                "OTLP protocol `{other}`: expected http/protobuf or http/json"
            )))
        }
    };
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(ExportSettings {
            endpoint: None,
            protocol,
        });
    }
    let endpoint = match endpoint_flag.map(str::to_owned) {
        // A flag, like the generic variable, names the collector: the path is added.
        Some(base) => Some(traces_url(&base)),
        None => set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT").map(|b| traces_url(&b))),
    };
    if let Some(url) = &endpoint {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "OTLP endpoint `{url}`: expected an http:// or https:// URL"
            )));
        }
    }
    Ok(ExportSettings { endpoint, protocol })
}

/// `http://collector:4318` → `http://collector:4318/v1/traces` (the generic endpoint's rule).
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// The installed subscriber's export side; [`shutdown`](Self::shutdown) it before exiting.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes the queued spans (within [`FLUSH_DEADLINE`]) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown_with_timeout(FLUSH_DEADLINE) {
                eprintln!("warning: OpenTelemetry: the last spans were not all delivered: {e}");
            }
        }
    }
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
        true => logs.json().with_filter(filter).boxed(),
        false => logs.with_filter(filter).boxed(),
    };
    let Some(endpoint) = &export.endpoint else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Telemetry { provider: None });
    };
    // The exporter's reqwest 0.13 has no TLS crypto provider of its own.
    aether_mcp::ensure_tls_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_protocol(export.protocol)
        .build()
        .map_err(|e| CliError::usage(format!("OTLP exporter for `{endpoint}`: {e}")))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "aether".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("aether");
    let spans = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(
        Targets::new()
            .with_target(GEN_AI_TARGET, tracing::Level::DEBUG)
            .with_target(aether_server::trace_context::TARGET, tracing::Level::DEBUG),
    );
    tracing_subscriber::registry().with(logs).with(spans).init();
    Ok(Telemetry {
        provider: Some(provider),
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
    }

    #[test]
    fn protocols_are_checked() {
        assert_eq!(settings(None, None, with(&[])).unwrap().protocol, Protocol::HttpBinary);
        assert_eq!(
            settings(None, Some("http/json"), with(&[])).unwrap().protocol,
            Protocol::HttpJson
        );
        let e = settings(None, None, with(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err();
        assert!(e.to_string().contains("not built into aether"), "{e}");
        assert!(settings(None, Some("carrier-pigeon"), with(&[])).is_err());
        assert!(settings(Some("ftp://x"), None, with(&[])).is_err());
    }
}
