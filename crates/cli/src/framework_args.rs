//! `--framework`: which agent framework runs the agents a command creates, and the frameworks
//! this binary links (`native` always; `adk`, adk-rust's `LlmAgent` and `Runner`, with the cargo
//! feature `adk`, on by default).

use std::collections::BTreeMap;
use std::sync::Arc;

use aether_harness::run::FrameworkHook;
use aether_runtime::RuntimeBuilder;

use crate::exit::CliError;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct FrameworkArgs {
    /// The agent framework: `native` (this runtime's engine) or `adk` (adk-rust 2.3 runs each
    /// turn: its LlmAgent and Runner over Aether's models, tools and sessions; needs a build with
    /// the `adk` feature, the default). Default: native.
    #[arg(long, value_name = "NAME")]
    pub framework: Option<String>,
}

/// Whether this binary links the `adk` framework.
pub const ADK_BUILT: bool = cfg!(feature = "adk");

impl FrameworkArgs {
    /// The chosen framework, checked against what this binary links.
    pub fn chosen(&self) -> Result<Option<&str>, CliError> {
        match self.framework.as_deref() {
            None => Ok(None),
            Some(name) => check(name, ADK_BUILT).map(Some).map_err(CliError::usage),
        }
    }
}

/// `name`, when a binary that does (or does not) link adk can run it.
fn check(name: &str, adk_built: bool) -> Result<&str, String> {
    match name {
        "native" => Ok(name),
        "adk" if adk_built => Ok(name),
        "adk" => Err(
            "--framework adk: this binary was built without the adk feature (build it with `cargo build \
                      --release -p aether-cli --features adk`)"
                .into(),
        ),
        other => Err(format!(
            "--framework: unknown framework `{other}` (known: native{})",
            if adk_built { ", adk" } else { "" }
        )),
    }
}

/// Registers the linked frameworks on a runtime being built.
pub fn install(builder: RuntimeBuilder) -> RuntimeBuilder {
    #[cfg(feature = "adk")]
    let builder = aether_adk::with_adk(builder);
    builder
}

/// The same, for the harness's in-process runtime.
pub fn hook() -> FrameworkHook {
    Arc::new(install)
}

/// The linked frameworks' versions, for the summary's provenance.
pub fn versions() -> BTreeMap<String, String> {
    #[allow(unused_mut)]
    let mut v = BTreeMap::new();
    #[cfg(feature = "adk")]
    v.insert("adk-rust".to_owned(), aether_adk::ADK_RUST_VERSION.to_owned());
    v
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn adk_needs_the_feature_and_unknown_names_are_refused() {
        assert_eq!(check("native", false), Ok("native"));
        assert_eq!(check("adk", true), Ok("adk"));
        assert!(check("adk", false)
            .unwrap_err()
            .contains("built without the adk feature"));
        let e = check("langgraph", true).unwrap_err();
        assert!(
            e.contains("unknown framework `langgraph`") && e.contains("native, adk"),
            "{e}"
        );
    }
}
