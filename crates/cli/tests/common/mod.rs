//! Helpers shared by the CLI tests: run the real binary, read its output, make scratch folders.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the binary. Its default SQLite file goes to a scratch folder, never the working tree.
pub fn aether(args: &[&str]) -> Output {
    command(args).output().expect("run aether")
}

pub fn command(args: &[&str]) -> Command {
    remove_stale_scratch();
    // Not created here: only a command that opens the default store makes the folder.
    let store = std::env::temp_dir().join(format!("aether-cli-{}-default-store-{}", std::process::id(), unique()));
    let mut c = Command::new(env!("CARGO_BIN_EXE_aether"));
    c.args(args).env("AETHER_STORE_PATH", store.join("sessions.db"));
    c
}

/// Removes the scratch folders of earlier test processes that have exited (once per process):
/// a test cannot clean up after itself when it fails, so the next run does.
fn remove_stale_scratch() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("aether-cli-"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
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
    remove_stale_scratch();
    let d = std::env::temp_dir().join(format!("aether-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running `aether serve`, its URL, the line that announced it, and the rest of its stderr.
pub struct Served {
    pub child: std::process::Child,
    pub url: String,
    pub announced: String,
    pub stderr: std::io::BufReader<std::process::ChildStderr>,
}

/// Reads the rest of a child's stderr on a thread (a full pipe would stall the child); its text.
pub fn drain(stderr: std::io::BufReader<std::process::ChildStderr>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    })
}

/// Starts `aether serve ARGS` (with `env` set) and waits for its "listening on" line.
pub fn start_serve(args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut full = vec!["serve"];
    full.extend_from_slice(args);
    let mut c = command(&full);
    c.envs(env.iter().copied());
    spawn_serve(c)
}

/// Starts a prepared `aether serve` command and waits for its "listening on" line.
pub fn spawn_serve(mut c: Command) -> Served {
    use std::io::BufRead;
    c.stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("start aether serve");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut before = String::new();
    while !line.contains("listening on") {
        before.push_str(&line);
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "aether serve exited before listening: {before}"
        );
    }
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Served {
        child,
        url,
        announced: line,
        stderr,
    }
}
