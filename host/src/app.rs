//! The subcommands: what `main` calls once the command line is parsed.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use abi_stable::sabi_trait::TD_Opaque;
use anyhow::{bail, Context, Result};
use auto_proto::Report;
use plugin_api::Executor_TO;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

use crate::{
    agent::delivery::{AgentKey, ApiClient, Retry},
    agent::identity::CertFile,
    agent::spool::Spool,
    agent::{self, Agent},
    config::{
        parse_duration, Args, CollectArgs, Command, ConfigFile, Format, RemoteArgs, RunArgs,
        EXAMPLE_CONFIG,
    },
    output,
    plugins::executor::LocalExecutor,
    plugins::file::PluginsFile,
    plugins::registry::{LoadOptions, PluginRegistry, RegistryCache},
    plugins::runner::{self, MakeExecutor},
    plugins::worker,
    remote::salt::{self, SaltConnector},
    remote::ssh::{SshConnector, SshSettings},
    remote::{self, HostResult, RemoteTarget},
    report, Isolation, Mode, Outcome,
};

/// Keeps the log file writer alive until the process ends.
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Logs to stderr with `RUST_LOG`-style filtering (default `default_level`), and, with a log
/// directory, to a daily-rotated file as well, with the source location of every event.
pub fn init_logging(default_level: &str, log_dir: Option<&Path>) -> Result<LogGuard> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter());
    let (file, guard) = match log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create log directory {}", dir.display()))?;
            let appender = tracing_appender::rolling::daily(dir, "auto-client.log");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_file(true)
                .with_line_number(true)
                .with_filter(filter());
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    Ok(LogGuard(guard))
}

pub fn run(args: Args) -> Result<Outcome> {
    if let Command::Worker {
        path,
        symbol,
        timeout_ms,
        target,
    } = args.command
    {
        return Ok(match worker::serve(path, symbol, timeout_ms, target) {
            0 => Outcome::AllWell,
            _ => Outcome::PartialFailure,
        });
    }
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
            let _log = init_logging("warn", None)?;
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
        Command::Collect(c) => {
            let _log = init_logging("warn", None)?;
            collect(&c, &plugins_path, &file)
        }
        Command::Run(r) => {
            let log_dir = r.log_dir.clone().or_else(|| file.log_dir.clone());
            let _log = init_logging("info", log_dir.as_deref())?;
            run_agent(&r, plugins_path, &file)
        }
        Command::Api(a) => {
            let _log = init_logging("warn", None)?;
            let api = a
                .api
                .clone()
                .or_else(|| file.api.clone())
                .context("no API URL: give --api, AUTO_CLIENT_API or `api` in the config")?;
            let key = agent_key(
                a.key_id.clone().or_else(|| file.key_id.clone()),
                a.key_file.clone().or_else(|| file.key_file.clone()),
            )?;
            let client = ApiClient::new(&api, key, Retry::default())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&client.get_json(&a.path)?)?
            );
            Ok(Outcome::AllWell)
        }
        Command::Worker { .. } => unreachable!("handled above"),
    }
}

fn load_options(file: &ConfigFile) -> LoadOptions {
    LoadOptions {
        private_copy_dir: None,
        strict_permissions: file.strict_permissions.unwrap_or(true),
    }
}

/// Reads `plugins.toml` and loads every plugin it names.
pub fn load_registry(plugins_path: &Path, file: &ConfigFile) -> Result<PluginRegistry> {
    let plugins = PluginsFile::load(plugins_path)?;
    Ok(PluginRegistry::load(plugins.specs(), &load_options(file)))
}

fn collect(args: &CollectArgs, plugins_path: &Path, file: &ConfigFile) -> Result<Outcome> {
    let mode = args.mode.or(file.mode).unwrap_or(Mode::Agent);
    if mode != Mode::Agent {
        return collect_remote(mode, args, plugins_path, file);
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
    let isolation = args.isolation.or(file.isolation).unwrap_or_default();
    let report = collect_local(&registry, None, isolation);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Table => print!("{}", output::report_table(&report)),
    }
    Ok(report_outcome(&report, &registry))
}

fn run_agent(args: &RunArgs, plugins_path: PathBuf, file: &ConfigFile) -> Result<Outcome> {
    let mode = args.mode.or(file.mode).unwrap_or(Mode::Agent);
    let api = args
        .api
        .clone()
        .or_else(|| file.api.clone())
        .context("no API URL: give --api, AUTO_CLIENT_API or `api` in the config")?;
    let key = agent_key(
        args.key_id.clone().or_else(|| file.key_id.clone()),
        args.key_file.clone().or_else(|| file.key_file.clone()),
    )?;
    let cert_path = args
        .cert_file
        .clone()
        .or_else(|| file.cert_file.clone())
        .unwrap_or_else(|| PathBuf::from("/var/lib/auto-client/cert"));
    let spool_dir = args
        .spool_dir
        .clone()
        .or_else(|| file.spool_dir.clone())
        .unwrap_or_else(|| PathBuf::from("/var/lib/auto-client/spool"));
    let spool = Spool::open(
        &spool_dir,
        file.spool_max_reports.unwrap_or(1000),
        file.spool_max_bytes.unwrap_or(64 << 20),
    )?;
    let interval = match args.interval.as_deref().or(file.interval.as_deref()) {
        Some(text) => Some(parse_duration("--interval", text)?),
        None => None,
    };
    if mode != Mode::Agent {
        let api = ApiClient::new(&api, key, Retry::default())?;
        return run_remote(mode, args, &plugins_path, file, api, spool);
    }
    let mut load = load_options(file);
    if interval.is_some() {
        // Long-running: load every library from a private copy, so one replaced on disk
        // (write-then-rename) is really loaded anew at the next cycle.
        load.private_copy_dir =
            Some(std::env::temp_dir().join(format!("auto-client-{}", std::process::id())));
    }
    let mut agent = Agent {
        api: ApiClient::new(&api, key, Retry::default())?,
        cert: CertFile::new(&cert_path),
        spool,
        plugins_path,
        load,
        isolation: args.isolation.or(file.isolation).unwrap_or_default(),
        cache: RegistryCache::default(),
    };
    match interval {
        Some(every) => agent::run_interval(&mut agent, every),
        None => agent.cycle(),
    }
}

fn agent_key(key_id: Option<String>, key_file: Option<PathBuf>) -> Result<Option<AgentKey>> {
    match (key_id, key_file) {
        (Some(id), Some(path)) => Ok(Some(AgentKey::from_file(&id, &path)?)),
        (None, None) => {
            tracing::warn!("no key_id and key_file: requests are sent unsigned (only a server started with --no-auth accepts them)");
            Ok(None)
        }
        (Some(_), None) => bail!("key_id is set but key_file is not: give both, or neither"),
        (None, Some(_)) => bail!("key_file is set but key_id is not: give both, or neither"),
    }
}

/// Collects this machine with every loaded plugin; load failures become error entries.
pub fn collect_local(
    registry: &PluginRegistry,
    previous_hostname: Option<String>,
    isolation: Isolation,
) -> Report {
    let mut registry = registry.clone();
    worker::mark_isolated(&mut registry, isolation);
    let name = report::local_hostname();
    let _span = tracing::info_span!("target", host = %name).entered();
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
    let pool = crate::pool::Pool::new("collector", registry.loaded.len());
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

/// The `[ssh]` settings with the flags laid over them.
fn ssh_settings(remote: &RemoteArgs, file: &ConfigFile) -> SshSettings {
    let mut s = file.ssh.clone();
    let r = remote.clone();
    s.user = r.ssh_user.or(s.user);
    s.port = r.ssh_port.or(s.port);
    s.identity_file = r.ssh_identity.or(s.identity_file);
    s.password_file = r.ssh_password_file.or(s.password_file);
    s.known_hosts = r.known_hosts.or(s.known_hosts);
    s.host_key_policy = r.host_key_policy.or(s.host_key_policy);
    s
}

fn listed_targets(remote: &RemoteArgs) -> Result<Vec<RemoteTarget>> {
    match &remote.hosts_file {
        Some(path) => RemoteTarget::read_file(path),
        None => remote
            .hosts
            .iter()
            .map(|h| RemoteTarget::parse(h))
            .collect(),
    }
}

/// Collects `targets` in ssh or salt mode.
fn collect_fleet(
    mode: Mode,
    targets: Vec<RemoteTarget>,
    registry: &PluginRegistry,
    remote_args: &RemoteArgs,
    file: &ConfigFile,
    on_done: Arc<dyn Fn(&HostResult) + Send + Sync>,
) -> Result<Vec<HostResult>> {
    let workers = remote_args.workers.or(file.workers).unwrap_or(32);
    match mode {
        Mode::Ssh => {
            let connector = Arc::new(
                SshConnector::new(&ssh_settings(remote_args, file))?.prefetching(registry),
            );
            Ok(remote::collect_fleet(
                targets, registry, connector, workers, on_done,
            ))
        }
        Mode::Salt => {
            let mut s = file.salt.clone();
            s.salt_command = remote_args.salt_command.clone().or(s.salt_command);
            s.config_dir = remote_args.salt_config_dir.clone().or(s.config_dir);
            let connector = Arc::new(SaltConnector::new(&s)?);
            Ok(salt::collect_fleet(
                targets, registry, connector, workers, on_done,
            ))
        }
        Mode::Agent => unreachable!("agent mode has no fleet"),
    }
}

/// ssh or salt mode for `collect`: print each host's report as it completes.
fn collect_remote(
    mode: Mode,
    args: &CollectArgs,
    plugins_path: &Path,
    file: &ConfigFile,
) -> Result<Outcome> {
    let targets = listed_targets(&args.remote)?;
    if targets.is_empty() {
        bail!(
            "--mode {} needs targets: give --hosts or --hosts-file",
            mode.as_str()
        );
    }
    let registry = load_registry(plugins_path, file)?;
    if registry.loaded.is_empty() {
        bail!("no plugin could be loaded from {}", plugins_path.display());
    }
    let format = args.format;
    let printer: Arc<dyn Fn(&HostResult) + Send + Sync> = Arc::new(move |(target, outcome, _)| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        match outcome {
            Ok(report) => {
                let _ = match format {
                    Format::Json => {
                        writeln!(out, "{}", serde_json::to_string(report).unwrap_or_default())
                    }
                    Format::Table => write!(out, "{}", output::report_table(report)),
                };
            }
            Err(f) => eprintln!("auto-client: host {}: {}", target.name, f.message),
        }
    });
    let started = Instant::now();
    let results = collect_fleet(mode, targets, &registry, &args.remote, file, printer)?;
    eprintln!("{}", remote::summary(&results, started.elapsed()));
    Ok(fleet_outcome(&results))
}

fn fleet_outcome(results: &[HostResult]) -> Outcome {
    let all_ok = results.iter().all(|(_, r, _)| {
        r.as_ref()
            .is_ok_and(|rep| rep.plugins.values().all(|p| p.is_ok()))
    });
    if all_ok {
        Outcome::AllWell
    } else {
        Outcome::PartialFailure
    }
}

/// ssh or salt mode for `run`: collect the hosts the API says are due (or the listed ones) and
/// report each as it completes; reports the API cannot take now wait in the spool.
fn run_remote(
    mode: Mode,
    args: &RunArgs,
    plugins_path: &Path,
    file: &ConfigFile,
    api: ApiClient,
    spool: Spool,
) -> Result<Outcome> {
    let listed = listed_targets(&args.remote)?;
    let targets = if listed.is_empty() {
        api.pending_hosts()?
            .into_iter()
            .map(|h| RemoteTarget {
                name: h.hostname,
                address: h.address,
                port: Some(h.port),
            })
            .collect()
    } else {
        listed
    };
    tracing::info!(hosts = targets.len(), mode = mode.as_str(), "collecting");
    let registry = load_registry(plugins_path, file)?;
    let api = Arc::new(api);
    let spool = Arc::new(spool);
    let mut outcome = Outcome::AllWell;
    if !agent::send_spool(&api, &spool)? {
        outcome = Outcome::PartialFailure;
    }
    let failed_delivery = Arc::new(AtomicBool::new(false));
    let deliver: Arc<dyn Fn(&HostResult) + Send + Sync> = {
        let (api, spool, failed) = (
            Arc::clone(&api),
            Arc::clone(&spool),
            Arc::clone(&failed_delivery),
        );
        Arc::new(move |(_, result, _)| {
            if let Ok(report) = result {
                if !agent::send_remote_report(&api, &spool, report) {
                    failed.store(true, Ordering::Relaxed);
                }
            }
        })
    };
    let started = Instant::now();
    let results = collect_fleet(mode, targets, &registry, &args.remote, file, deliver)?;
    eprintln!("{}", remote::summary(&results, started.elapsed()));
    outcome = outcome.worst(fleet_outcome(&results));
    if failed_delivery.load(Ordering::Relaxed) {
        outcome = outcome.worst(Outcome::PartialFailure);
    }
    Ok(outcome)
}
