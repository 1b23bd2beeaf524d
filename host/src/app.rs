//! The subcommands: what `main` calls once the command line is parsed.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{bail, Context, Result};
use auto_proto::Report;
use serde_json::value::RawValue;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

use crate::{
    agent::delivery::{ApiClient, Retry},
    agent::identity::CertFile,
    agent::spool::Spool,
    agent::{self, Agent},
    config::{Args, Command, ConfigFile, Format, EXAMPLE_CONFIG},
    local, output,
    plugins::file::PluginsFile,
    plugins::registry::{LoadOptions, PluginRegistry, RegistryCache},
    plugins::runner::Data,
    plugins::worker,
    remote::salt::SaltConnector,
    remote::ssh::SshConnector,
    remote::{self, Connector, HostResult, HostSummary, RemoteTarget},
    settings::{self, Fleet, Where},
    Mode, Outcome,
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
    remote::caches::restore_env();
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
    match args.command {
        Command::DefaultConfig => {
            emit(EXAMPLE_CONFIG)?;
            Ok(Outcome::AllWell)
        }
        Command::Plugins { format } => {
            let _log = init_logging("warn", None)?;
            let common = settings::Common::resolve(args.plugins, &file);
            let registry = load_registry(&common.plugins_path, &common.load)?;
            match format {
                Format::Json => emit(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&output::plugins_json(&registry))?
                ))?,
                Format::Table => emit(&output::plugins_table(&registry))?,
            }
            Ok(if registry.failed.is_empty() {
                Outcome::AllWell
            } else {
                Outcome::PartialFailure
            })
        }
        Command::Collect(c) => {
            let _log = init_logging("warn", None)?;
            let settings = settings::Collect::resolve(args.plugins, &c, &file)?;
            collect(&settings, c.format)
        }
        Command::Run(r) => {
            let settings = settings::Run::resolve(args.plugins, &r, &file)?;
            if matches!(settings.at, Where::Fleet(_)) {
                // before the log file's writer thread starts
                remote::caches::off();
            }
            let _log = init_logging("info", settings.log_dir.as_deref())?;
            let textfile = r.textfile.clone().or_else(|| file.textfile.clone());
            run_main(settings, textfile)
        }
        Command::Api(a) => {
            let _log = init_logging("warn", None)?;
            let api = settings::Api::resolve(&a.api, &file)?;
            let client = ApiClient::new(&api.url, api.key, Retry::default())?;
            emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&client.get_json(&a.path)?)?
            ))?;
            Ok(Outcome::AllWell)
        }
        Command::Deploy(d) => {
            let _log = init_logging("info", None)?;
            crate::deploy::run(args.plugins, &d, &file)
        }
        Command::Worker { .. } => unreachable!("handled above"),
    }
}

/// Writes `text` to standard output. A reader that has gone (`auto-client collect | head`) is not
/// an error of the collection: the rest is dropped quietly (`println!` panicked on the broken pipe).
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// Reads `plugins.toml` and loads every plugin it names.
pub fn load_registry(plugins_path: &Path, load: &LoadOptions) -> Result<PluginRegistry> {
    let plugins = PluginsFile::load(plugins_path)?;
    Ok(PluginRegistry::load(plugins.specs(), load))
}

fn collect(settings: &settings::Collect, format: Format) -> Result<Outcome> {
    let common = &settings.common;
    let isolation = match &settings.at {
        Where::Fleet(fleet) => {
            remote::caches::off();
            return collect_remote(fleet, common, format);
        }
        Where::Local(isolation) => *isolation,
    };
    match format {
        // printed as the collectors wrote it (each collector's data is checked compact JSON)
        Format::Json => {
            let (registry, report) = collect_here::<Box<RawValue>>(common, isolation)?;
            emit(&format!("{}\n", serde_json::to_string(&report)?))?;
            Ok(local::report_outcome(&report, &registry))
        }
        Format::Table => {
            let (registry, report) = collect_here::<serde_json::Value>(common, isolation)?;
            emit(&output::report_table(&report))?;
            Ok(local::report_outcome(&report, &registry))
        }
    }
}

/// This machine, with the plugins of `common`'s plugins.toml.
fn collect_here<D: Data>(
    common: &settings::Common,
    isolation: crate::Isolation,
) -> Result<(PluginRegistry, Report<D>)> {
    let specs = PluginsFile::load(&common.plugins_path)?.specs();
    let (registry, report) = local::load_and_collect::<D>(
        &mut RegistryCache::default(),
        specs,
        &common.load,
        None,
        isolation,
    );
    if registry.loaded.is_empty() && registry.failed.is_empty() {
        bail!(
            "no plugins to run: {} names none",
            common.plugins_path.display()
        );
    }
    Ok((registry, report))
}

fn run_main(settings: settings::Run, textfile: Option<std::path::PathBuf>) -> Result<Outcome> {
    let spool = Spool::open(
        &settings.spool_dir,
        settings.spool_max_reports,
        settings.spool_max_bytes,
    )?;
    let api = ApiClient::new(
        &settings.api.url,
        settings.api.key.clone(),
        Retry::default(),
    )?;
    let mut load = settings.common.load.clone();
    if settings.interval.is_some() {
        // Long-running: load every library from a private copy, so one replaced on disk
        // (write-then-rename) is really loaded anew at the next cycle.
        load.private_copy_dir =
            Some(std::env::temp_dir().join(format!("auto-client-{}", std::process::id())));
    }
    let isolation = match &settings.at {
        Where::Fleet(fleet) => {
            // One connector for every cycle: salt mode's Python helper (~1 s to start) and ssh
            // mode's key and known_hosts stay loaded between cycles.
            let connector = connector(fleet)?;
            let (api, spool) = (Arc::new(api), Arc::new(spool));
            let mut cache = RegistryCache::default();
            let mut cycle = || {
                run_remote(
                    fleet,
                    &settings.common.plugins_path,
                    &load,
                    &mut cache,
                    &connector,
                    &api,
                    &spool,
                )
            };
            return match settings.interval {
                Some(every) => agent::every(every, fleet.mode.as_str(), cycle),
                None => cycle(),
            };
        }
        Where::Local(isolation) => *isolation,
    };
    let mut agent = Agent {
        api,
        cert: CertFile::new(&settings.cert_path),
        spool,
        plugins_path: settings.common.plugins_path.clone(),
        load,
        isolation,
        cache: RegistryCache::default(),
        lists: agent::lists::ListState::new(&settings.cert_path, settings.full_report_every),
        textfile,
    };
    match settings.interval {
        Some(every) => agent::run_interval(&mut agent, every),
        None => agent.cycle(),
    }
}

/// The fleet's connector: its SSH login and known_hosts, or its Salt helper.
fn connector(fleet: &Fleet) -> Result<Arc<dyn Connector>> {
    Ok(match fleet.mode {
        Mode::Ssh => Arc::new(SshConnector::new(&fleet.ssh)?),
        Mode::Salt => Arc::new(SaltConnector::new(&fleet.salt)?),
        Mode::Agent => unreachable!("agent mode has no fleet"),
    })
}

/// ssh or salt mode for `collect`: print each host's report as it completes.
fn collect_remote(fleet: &Fleet, common: &settings::Common, format: Format) -> Result<Outcome> {
    let registry = load_registry(&common.plugins_path, &common.load)?;
    if registry.loaded.is_empty() {
        bail!(
            "no plugin could be loaded from {}",
            common.plugins_path.display()
        );
    }
    let printer: Arc<dyn Fn(&HostResult) + Send + Sync> = Arc::new(move |r: &HostResult| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        match &r.outcome {
            Ok(report) => {
                let _ = match format {
                    Format::Json => {
                        writeln!(out, "{}", serde_json::to_string(report).unwrap_or_default())
                    }
                    // the table reads the data: parsed here, one host at a time
                    Format::Table => match serde_json::to_string(report)
                        .and_then(|text| serde_json::from_str(&text))
                    {
                        Ok(parsed) => write!(out, "{}", output::report_table(&parsed)),
                        Err(e) => writeln!(out, "{}: cannot show the report: {e}", report.hostname),
                    },
                };
            }
            Err(f) => eprintln!("auto-client: host {}: {}", r.target.name, f.message),
        }
    });
    let started = Instant::now();
    let results = remote::collect_fleet(
        fleet.listed.clone(),
        &registry,
        connector(fleet)?,
        fleet.workers,
        printer,
    );
    eprintln!("{}", remote::summary(&results, started.elapsed()));
    Ok(fleet_outcome(&results))
}

fn fleet_outcome(results: &[HostSummary]) -> Outcome {
    let all_ok = results.iter().all(HostSummary::all_ok);
    if all_ok {
        Outcome::AllWell
    } else {
        Outcome::PartialFailure
    }
}

/// ssh or salt mode for `run`: collect the hosts the API says are due (or the listed ones) and
/// report each as it completes; reports the API cannot take now wait in the spool.
/// One cycle: plugins.toml read again (through `cache`: a library replaced on disk is loaded anew,
/// from a private copy, when `load` says so), the due hosts asked of the API again.
fn run_remote(
    fleet: &Fleet,
    plugins_path: &Path,
    load: &LoadOptions,
    cache: &mut RegistryCache,
    connector: &Arc<dyn Connector>,
    api: &Arc<ApiClient>,
    spool: &Arc<Spool>,
) -> Result<Outcome> {
    let targets = if fleet.listed.is_empty() {
        api.pending_hosts()?
            .into_iter()
            .map(|h| RemoteTarget {
                name: h.hostname,
                address: h.address,
                port: Some(h.port),
            })
            .collect()
    } else {
        fleet.listed.clone()
    };
    tracing::info!(
        hosts = targets.len(),
        mode = fleet.mode.as_str(),
        "collecting"
    );
    let registry = cache.load(PluginsFile::load(plugins_path)?.specs(), load);
    let mut outcome = Outcome::AllWell;
    if !agent::send_spool(api, spool, None)? {
        outcome = Outcome::PartialFailure;
    }
    let failed_delivery = Arc::new(AtomicBool::new(false));
    let deliver: Arc<dyn Fn(&HostResult) + Send + Sync> = {
        let (api, spool, failed) = (
            Arc::clone(api),
            Arc::clone(spool),
            Arc::clone(&failed_delivery),
        );
        Arc::new(move |r: &HostResult| {
            if let Ok(report) = &r.outcome {
                if !agent::send_remote_report(&api, &spool, report) {
                    failed.store(true, Ordering::Relaxed);
                }
            }
        })
    };
    let started = Instant::now();
    let results = remote::collect_fleet(
        targets,
        &registry,
        Arc::clone(connector),
        fleet.workers,
        deliver,
    );
    eprintln!("{}", remote::summary(&results, started.elapsed()));
    outcome = outcome.worst(fleet_outcome(&results));
    if failed_delivery.load(Ordering::Relaxed) {
        outcome = outcome.worst(Outcome::PartialFailure);
    }
    Ok(outcome)
}
