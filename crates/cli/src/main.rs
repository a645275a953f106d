//! `aether`: the Aether Frame command line. Subcommands live in their own modules; this file
//! parses arguments, sets up logging and maps failures onto exit codes (2: bad input,
//! 1: the work itself failed).

mod chat;
mod exit;
mod framework_args;
mod info;
mod mcp_args;
mod mcp_serve;
mod perf;
mod provider_args;
mod serve;
mod sessions;
mod sim_args;
mod simllm;
#[cfg(all(not(target_env = "msvc"), not(feature = "system-allocator")))]
mod sqlite_alloc;
mod store_args;
mod telemetry;
mod validate;

use clap::{Parser, Subcommand};

use exit::CliError;

/// The process's allocator: jemalloc. Against glibc's, measured side by side, a turn takes
/// 8–21 % less time and span export half as much (see `aether_runtime::stats::heap_allocated_bytes`,
/// which reads its statistics). SQLite is given it too (`sqlite_alloc`); llama.cpp still
/// allocates through glibc.
/// Feature `system-allocator` keeps glibc's, for heap profilers that intercept `malloc`.
#[cfg(all(not(target_env = "msvc"), not(feature = "system-allocator")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Aether Frame: an agent runtime with a performance harness built in.
///
/// With no API key and no server everything runs on the embedded default: the simulated model
/// (clearly labelled in every output) and in-process sessions.
#[derive(Parser)]
#[command(name = "aether", version, propagate_version = true, arg_required_else_help = true)]
struct Cli {
    /// Log level: error, warn, info, debug or trace (or a tracing filter such as
    /// `aether_runtime=debug`). Logs go to stderr.
    #[arg(long, global = true, default_value = "warn", env = "AETHER_LOG")]
    log_level: String,

    /// Async worker threads (default: one per core).
    #[arg(long, global = true, value_name = "N", env = "AETHER_WORKER_THREADS")]
    worker_threads: Option<usize>,

    /// Log format: `text` for people, `json` (one object per line) for log pipelines.
    #[arg(long, global = true, value_enum, default_value = "text", env = "AETHER_LOG_FORMAT")]
    log_format: LogFormat,

    /// Export the runtime's GenAI spans and metrics (OpenTelemetry semantic conventions) to this
    /// OTLP collector, e.g. http://127.0.0.1:4318 (spans go to /v1/traces, metrics to
    /// /v1/metrics). Default: the standard OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT /
    /// _METRICS_ENDPOINT); with none, nothing is exported. OTEL_SDK_DISABLED=true turns export
    /// off; OTEL_BSP_MAX_QUEUE_SIZE bounds the span queue (full: spans dropped and counted).
    #[arg(long, global = true, value_name = "URL")]
    otlp_endpoint: Option<String>,

    /// OTLP protocol: http/protobuf (default), http/json or grpc (then the endpoint is the
    /// collector's gRPC port, e.g. http://127.0.0.1:4317). Default: OTEL_EXPORTER_OTLP_PROTOCOL.
    #[arg(long, global = true, value_name = "PROTOCOL")]
    otlp_protocol: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The performance harness: run the plan's scenarios, list them, compare summaries.
    #[command(subcommand)]
    Perf(perf::PerfCommand),
    /// Create an agent and run conversation turns against it (the two-step protocol).
    Chat(Box<chat::ChatArgs>),
    /// Serve the runtime's HTTP API: agents, tasks, live turns, sessions, metrics (multi-tenant).
    Serve(Box<serve::ServeArgs>),
    /// Serve the registry's tools (built-in and demo) as an MCP server over stdio or streamable HTTP.
    McpServe(mcp_serve::McpServeArgs),
    /// Serve the simulated model over HTTP in the OpenAI-compatible format.
    SimLlm(simllm::SimLlmArgs),
    /// Inspect and manage stored chat sessions (list, show, delete, export).
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// List the registered tools with their parameters.
    Tools(info::ToolsArgs),
    /// List the simulated model's profiles (latency, output length, price).
    Models(info::ModelsArgs),
    /// Check a JSON contract (a TaskRequest, TaskResult, AgentConfig, ...) and name any bad field.
    Validate(validate::ValidateArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Signal dispositions, set once at start-up, before any other thread exists.
///
/// SIGXFSZ is ignored, so a write past the file size limit (`ulimit -f`) fails with an error the
/// store reports (as a full disk does) instead of killing the process mid-write.
///
/// SIGPIPE stays ignored (Rust's default) for every command that talks over sockets: hyper writes
/// with `writev`, which (unlike `send`) raises SIGPIPE when the peer has gone, so with the default
/// action a client hanging up on a streamed answer killed `aether serve` or `aether sim-llm`
/// (exit 141). Only the commands that just print (`sessions`, `tools`, `models`, `validate`) get
/// the default action back, so that `aether ... | head` ends quietly like other Unix tools.
fn signal_dispositions(command: &Command) {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        if matches!(
            command,
            Command::Sessions(_) | Command::Tools(_) | Command::Models(_) | Command::Validate(_)
        ) {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

fn main() {
    let cli = Cli::parse();
    signal_dispositions(&cli.command);
    let telemetry = telemetry::settings(cli.otlp_endpoint.as_deref(), cli.otlp_protocol.as_deref(), |k| {
        std::env::var(k).ok()
    })
    .and_then(|export| telemetry::init(&cli.log_level, matches!(cli.log_format, LogFormat::Json), &export));
    let telemetry = match telemetry {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    };
    // Before any SQLite connection opens (SQLite reads its allocator once, when it initialises).
    #[cfg(all(not(target_env = "msvc"), not(feature = "system-allocator")))]
    sqlite_alloc::install();
    let outcome = (|| {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = cli.worker_threads {
            if n == 0 {
                return Err(CliError::usage("--worker-threads must be at least 1"));
            }
            builder.worker_threads(n);
        }
        let rt = builder
            .enable_all()
            .build()
            .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
        let meter = telemetry.meter();
        rt.block_on(async {
            match cli.command {
                Command::Perf(c) => perf::run(c, meter).await,
                Command::Chat(a) => chat::run(*a, meter).await,
                Command::Sessions(c) => sessions::run(c).await,
                Command::Serve(a) => serve::run(*a, meter).await,
                Command::SimLlm(a) => simllm::run(a).await,
                Command::McpServe(a) => mcp_serve::run(a).await,
                Command::Tools(a) => info::tools(a).await,
                Command::Models(a) => info::models(a),
                Command::Validate(a) => validate::run(a),
            }
        })
    })();
    // Deliver the last spans (within a deadline) before exiting.
    telemetry.shutdown();
    if let Err(e) = outcome {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
