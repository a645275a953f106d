//! `aether validate`: checks a JSON contract file and names the first bad field.

use std::io::Read;
use std::path::PathBuf;

use aether_contracts::{
    from_json_str, AgentConfig, ContractError, TaskRequest, TaskResult, TaskStreamChunk, ToolRequest, ToolResult,
    UniversalMessage,
};
use clap::{Args, ValueEnum};

use crate::exit::CliError;

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    TaskRequest,
    TaskResult,
    AgentConfig,
    Message,
    ToolRequest,
    ToolResult,
    StreamChunk,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Which contract the file holds.
    #[arg(long, value_enum, default_value = "task-request")]
    kind: Kind,
    /// The JSON file, or `-` for standard input.
    file: PathBuf,
}

fn check(kind: Kind, text: &str) -> Result<(), ContractError> {
    match kind {
        Kind::TaskRequest => from_json_str::<TaskRequest>(text).map(drop),
        Kind::TaskResult => from_json_str::<TaskResult>(text).map(drop),
        Kind::AgentConfig => from_json_str::<AgentConfig>(text).map(drop),
        Kind::Message => from_json_str::<UniversalMessage>(text).map(drop),
        Kind::ToolRequest => from_json_str::<ToolRequest>(text).map(drop),
        Kind::ToolResult => from_json_str::<ToolResult>(text).map(drop),
        Kind::StreamChunk => from_json_str::<TaskStreamChunk>(text).map(drop),
    }
}

pub fn run(args: ValidateArgs) -> Result<(), CliError> {
    let name = args.file.display().to_string();
    let text = if name == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::usage(format!("cannot read standard input: {e}")))?;
        s
    } else {
        std::fs::read_to_string(&args.file).map_err(|e| CliError::usage(format!("cannot read `{name}`: {e}")))?
    };
    let kind_name = Kind::value_variants()
        .iter()
        .position(|k| std::mem::discriminant(k) == std::mem::discriminant(&args.kind))
        .and_then(|i| Kind::value_variants()[i].to_possible_value())
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    match check(args.kind, &text) {
        Ok(()) => {
            println!("{name}: valid {kind_name}");
            Ok(())
        }
        Err(e) => {
            let at = match (e.line, e.column) {
                (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
                _ => String::new(),
            };
            Err(CliError::usage(format!("{name}: not a valid {kind_name}: {e}{at}")))
        }
    }
}
