//! The subcommands: what `main` calls once the command line is parsed.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use abi_stable::sabi_trait::TD_Opaque;
use anyhow::{bail, Result};
use auto_proto::Report;
use plugin_api::Executor_TO;
use threadpool::ThreadPool;

use crate::{
    config::{Args, CollectArgs, Command, ConfigFile, Format, EXAMPLE_CONFIG},
    executor::LocalExecutor,
    output,
    plugins_file::PluginsFile,
    registry::{LoadOptions, PluginRegistry},
    report,
    runner::{self, MakeExecutor},
    Mode, Outcome,
};

/// stderr logging with `RUST_LOG`-style filtering (default: warnings and errors).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn run(args: Args) -> Result<Outcome> {
    let (file, _config_path) = ConfigFile::discover(args.config.as_deref())?;
    let plugins_path = args
        .plugins
        .clone()
        .or_else(|| file.plugins.clone())
        .unwrap_or_else(|| PathBuf::from("plugins.toml"));
    match args.command {
        Command::DefaultConfig => {
            print!("{EXAMPLE_CONFIG}");
            Ok(Outcome::AllWell)
        }
        Command::Plugins { format } => {
            let registry = load_registry(&plugins_path, &file)?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&output::plugins_json(&registry))?
                ),
                Format::Table => print!("{}", output::plugins_table(&registry)),
            }
            Ok(if registry.failed.is_empty() {
                Outcome::AllWell
            } else {
                Outcome::PartialFailure
            })
        }
        Command::Collect(c) => collect(&c, &plugins_path, &file),
        Command::Run(_) => bail!("`run` is not built yet: use `collect` (see the README)"),
    }
}

/// Reads `plugins.toml` and loads every plugin it names.
pub fn load_registry(plugins_path: &Path, file: &ConfigFile) -> Result<PluginRegistry> {
    let plugins = PluginsFile::load(plugins_path)?;
    let options = LoadOptions {
        private_copy_dir: None,
        strict_permissions: file.strict_permissions.unwrap_or(false),
    };
    Ok(PluginRegistry::load(plugins.specs(), &options))
}

fn collect(args: &CollectArgs, plugins_path: &Path, file: &ConfigFile) -> Result<Outcome> {
    let mode = args.mode.or(file.mode).unwrap_or(Mode::Agent);
    if mode != Mode::Agent {
        bail!(
            "--mode {} is not built yet: only agent mode collects today",
            mode.as_str()
        );
    }
    let started = Instant::now();
    let registry = load_registry(plugins_path, file)?;
    tracing::debug!(
        took_us = started.elapsed().as_micros() as u64,
        "plugins loaded"
    );
    if registry.loaded.is_empty() && registry.failed.is_empty() {
        bail!("no plugins to run: {} names none", plugins_path.display());
    }
    let report = collect_local(&registry, None);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Table => print!("{}", output::report_table(&report)),
    }
    Ok(report_outcome(&report, &registry))
}

/// Collects this machine with every loaded plugin; load failures become error entries.
pub fn collect_local(registry: &PluginRegistry, previous_hostname: Option<String>) -> Report {
    let name = report::local_hostname();
    let target = name.clone();
    let make: MakeExecutor = Arc::new(move |deadline| {
        Executor_TO::from_value(
            LocalExecutor {
                target_name: target.clone(),
                deadline,
            },
            TD_Opaque,
        )
    });
    let pool = ThreadPool::with_name("collector".into(), registry.loaded.len().max(1));
    let mut plugins = runner::collect_all(&registry.loaded, &make, &pool);
    for failure in &registry.failed {
        plugins.insert(failure.name.clone(), runner::load_failure(failure));
    }
    let hostname = report::target_hostname(&plugins, &name);
    report::build(hostname, previous_hostname, Mode::Agent, plugins)
}

/// 0 when every plugin loaded and reported, 1 when any failed, 2 when none could run.
pub fn report_outcome(report: &Report, registry: &PluginRegistry) -> Outcome {
    if registry.loaded.is_empty() {
        Outcome::Fatal
    } else if report.plugins.values().all(|p| p.is_ok()) {
        Outcome::AllWell
    } else {
        Outcome::PartialFailure
    }
}
