//! `auto-client`: loads collector plugins through the stable ABI (`plugin-api`), runs them against
//! one or many targets, and reports each target's asset facts to `auto-server`.
//!
//! The binary (`main.rs`) only parses the command line and maps the outcome to an exit code; the
//! work is here, one module per concern. Not here: what a collector gathers (`plugins/`), the wire
//! format (`auto-proto`), the server.

pub mod agent;
pub mod app;
pub mod config;
pub mod deploy;
pub mod local;
pub mod output;
pub mod plugins;
pub mod pool;
pub mod remote;
pub mod report;
pub mod settings;

use clap::ValueEnum;
use serde::Deserialize;

/// Where the collectors' commands run (fixed: see `docs/contracts.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// This machine.
    Agent,
    /// Remote hosts over SSH.
    Ssh,
    /// Minions through a Salt master.
    Salt,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Agent => "agent",
            Mode::Ssh => "ssh",
            Mode::Salt => "salt",
        }
    }
}

/// Where collectors run relative to the host process (agent mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// In this process, on the thread pool.
    None,
    /// Each collector call in a child worker process.
    Process,
    /// Drop-in plugins in a worker process, plugins named in plugins.toml in this process.
    #[default]
    #[serde(rename = "dropins")]
    #[value(name = "dropins")]
    DropIns,
}

/// The exit codes (documented in the README): all well, something failed, nothing could run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    AllWell = 0,
    PartialFailure = 1,
    Fatal = 2,
}

impl Outcome {
    pub fn worst(self, other: Outcome) -> Outcome {
        if (other as u8) > (self as u8) {
            other
        } else {
            self
        }
    }
}

/// For unit tests that run themselves again in a child process (under limits, or as another
/// user): the test binary, started on that one test (`module` is its `module_path!()`).
#[cfg(test)]
pub(crate) fn this_test_again(module: &str, name: &str) -> std::process::Command {
    // the test's name as libtest knows it: its module path without the crate's name
    let path = module.split_once("::").map_or(module, |(_, path)| path);
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
    child.args([
        format!("{path}::{name}").as_str(),
        "--exact",
        "--test-threads=1",
        "--nocapture",
    ]);
    child
}
