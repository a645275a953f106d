//! Helpers shared by the CLI tests: run the real binary, read its output, make scratch folders.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the binary. Its default SQLite file goes to a scratch folder, never the working tree.
pub fn aether(args: &[&str]) -> Output {
    command(args).output().expect("run aether")
}

pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aether"));
    c.args(args).env(
        "AETHER_STORE_PATH",
        tmp(&format!("default-store-{}", unique())).join("sessions.db"),
    );
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}")
}

/// A fresh scratch folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aether-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
