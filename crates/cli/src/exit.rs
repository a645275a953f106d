//! The CLI's error type: what went wrong and which exit code it earns.

/// A failure at the binary's edge.
#[derive(Debug)]
pub enum CliError {
    /// Bad input (flags, files, values): exit code 2.
    Usage(String),
    /// The work ran and failed: exit code 1.
    Failed(String),
}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::Usage(msg.into())
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        Self::Failed(msg.into())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usage(m) | Self::Failed(m) => f.write_str(m),
        }
    }
}
