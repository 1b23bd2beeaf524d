//! Many targets at once (ssh and salt mode): a bounded pool of host workers, each connecting to one
//! target and running every collector over that one connection; a progress line on a terminal or a
//! log line per host otherwise; a closing summary.

pub mod batch;
pub mod caches;
pub mod learn;
pub mod pace;
pub mod salt;
pub mod ssh;

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use auto_proto::Report;
use serde_json::value::RawValue;

use crate::{
    plugins::registry::PluginRegistry,
    plugins::runner::{self, MakeExecutor},
    pool::Pool,
    report, Mode,
};

/// One machine to collect from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTarget {
    /// The name the API (or the hosts list) knows it by: it plays the cert's part.
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
}

impl RemoteTarget {
    /// `name`, `name=address` or `name=address:port`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let (name, rest) = text.split_once('=').unwrap_or((text, text));
        if name.is_empty() || rest.is_empty() {
            bail!("host {text:?}: expected NAME, NAME=ADDRESS or NAME=ADDRESS:PORT");
        }
        let (address, port) = match rest.rsplit_once(':') {
            Some((a, p)) if !a.contains(':') || a.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .with_context(|| format!("host {text:?}: port {p:?} is not a number"))?;
                (
                    a.trim_matches(|c| c == '[' || c == ']').to_string(),
                    Some(port),
                )
            }
            _ => (rest.to_string(), None),
        };
        Ok(Self {
            name: name.to_string(),
            address,
            port,
        })
    }

    /// A hosts file: one target a line, `NAME [ADDRESS [PORT]]` or `NAME=ADDRESS[:PORT]`;
    /// `#` starts a comment.
    pub fn read_file(path: &Path) -> Result<Vec<Self>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read hosts file {}", path.display()))?;
        let mut targets = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let t = match words.as_slice() {
                [one] => Self::parse(one),
                [name, address] => Self::parse(&format!("{name}={address}")),
                [name, address, port] => Self::parse(&format!("{name}={address}:{port}")),
                _ => bail!("too many fields"),
            }
            .with_context(|| format!("{}:{}", path.display(), n + 1))?;
            targets.push(t);
        }
        Ok(targets)
    }
}

/// Why a whole host could not be collected.
#[derive(Debug, Clone)]
pub struct HostFailure {
    pub kind: String,
    pub message: String,
}

/// Opens the connection to one target; the answer makes one executor per collector call.
pub trait Connector: Send + Sync {
    fn connect(&self, target: &RemoteTarget) -> Result<MakeExecutor, HostFailure>;
    fn mode(&self) -> Mode;
    /// The one prefetch hook, called once before any host is collected, with the commands the
    /// collectors will ask for (learned by a dry run, [`learn::dry_run`]): ssh mode runs them on
    /// each host in one request right after connecting; salt mode runs them on every minion now,
    /// as one job.
    fn prefetch(&self, targets: &[RemoteTarget], learned: &[learn::Ask], shortest: Duration);
    /// Called once after the last host (to log, and to drop what was prefetched).
    fn finish(&self) {}
    /// The window of hosts under way, if connecting is paced (ssh: [`pace`]); the connector
    /// signals it how each handshake went. None: `workers` at once.
    fn pacer(&self) -> Option<&pace::Pacer> {
        None
    }
}

/// A target's report in ssh and salt mode: each collector's data is its JSON text as it came,
/// passed on unparsed (see [`runner::Data`]).
pub type RawReport = Report<Box<RawValue>>;

/// What became of one host.
#[derive(Debug)]
pub struct HostResult {
    pub target: RemoteTarget,
    /// Its report, or why it could not be collected.
    pub outcome: Result<RawReport, HostFailure>,
    pub took: Duration,
}

/// What the closing summary and the exit code need of one host, kept after its report was handed
/// to `on_done` (a report is ~16 KB: 10,000 of them held to the end were most of the RSS).
#[derive(Debug, Clone)]
pub struct HostSummary {
    pub name: String,
    /// How many of its collectors failed, or why the host could not be collected.
    pub outcome: Result<usize, HostFailure>,
    pub took: Duration,
}

impl HostSummary {
    fn of(result: &HostResult) -> Self {
        Self {
            name: result.target.name.clone(),
            outcome: match &result.outcome {
                Ok(report) => Ok(report.plugins.values().filter(|p| !p.is_ok()).count()),
                Err(f) => Err(f.clone()),
            },
            took: result.took,
        }
    }

    /// Collected, every collector ok.
    pub fn all_ok(&self) -> bool {
        matches!(self.outcome, Ok(0))
    }
}

/// Collects every target with `workers` hosts at a time. `on_done` is called from the worker
/// thread as each host finishes (to print or deliver its report at once); the report is dropped
/// right after, only its [`HostSummary`] is kept (sorted by name).
pub fn collect_fleet(
    targets: Vec<RemoteTarget>,
    registry: &PluginRegistry,
    connector: Arc<dyn Connector>,
    workers: usize,
    on_done: Arc<dyn Fn(&HostResult) + Send + Sync>,
) -> Vec<HostSummary> {
    let workers = workers.max(1);
    let total = targets.len();
    // glibc gives each of the hundreds of threads below one of 8 × cores malloc arenas, and each
    // keeps what its hosts' outputs once took: 10,000 targets at --workers 200 held 16 arenas of
    // ~14 MB and a 72 MB heap (300 MB RSS). A few arenas hand freed memory on to the next host,
    // and a fixed mmap threshold sends the large buffers (a host's batch output, its report's
    // JSON: ~100 KB each) to mmap, returned whole when freed, instead of fragmenting the heap
    // (glibc's default threshold rises to the largest block freed).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes glibc's allocator; these may be set at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
    if let Some(shortest) = registry.loaded.iter().map(|p| p.timeout()).min() {
        connector.prefetch(&targets, &learn::dry_run(registry), shortest);
    }
    let hosts = Pool::new("host", workers);
    // Collector calls wait on the network, but one host's calls are serialised on its one
    // connection: two threads per host in flight keep every connection busy; more only costs
    // thread starts.
    let collectors = Pool::new("collector", (workers * 2).min(512));
    let progress = Arc::new(Progress::new(total));
    let results = Arc::new(Mutex::new(Vec::with_capacity(total)));
    // one registry for every queued host: a clone per host (names, paths, options of every
    // plugin: ~7 KB) held 70 MB while 10,000 hosts waited in the queue
    let registry = Arc::new(registry.clone());
    for target in targets {
        let registry = Arc::clone(&registry);
        let connector = Arc::clone(&connector);
        let collectors = collectors.clone();
        let results = Arc::clone(&results);
        let progress = Arc::clone(&progress);
        let on_done = Arc::clone(&on_done);
        hosts.execute(move || {
            let waited = Instant::now();
            // a place in the window for the whole host, up to its report handed on
            let place = connector.pacer().map(pace::Pacer::start);
            let started = Instant::now();
            let span = tracing::info_span!("target", host = %target.name);
            let _entered = span.enter();
            if let Some(pacer) = connector.pacer() {
                tracing::debug!(
                    waited_ms = started.duration_since(waited).as_millis() as u64,
                    window = pacer.limit(),
                    "a place in the window"
                );
            }
            // each step up to "host collected" logs its duration (issue 14: 19 s passed between a
            // host's last collector and that line with nothing said)
            let ms = |since: Instant| since.elapsed().as_millis() as u64;
            let outcome = connector.connect(&target).map(|make| {
                let step = Instant::now();
                tracing::debug!(took_ms = ms(started), "connected: starting the collectors");
                let mut plugins =
                    runner::collect_all::<Box<RawValue>>(&registry.loaded, &make, &collectors);
                tracing::debug!(took_ms = ms(step), "collectors finished");
                let step = Instant::now();
                for failure in &registry.failed {
                    plugins.insert(failure.name.clone(), runner::load_failure(failure));
                }
                let hostname = report::target_hostname(&plugins, &target.name);
                let report = report::build(
                    hostname,
                    Some(target.name.clone()),
                    connector.mode(),
                    plugins,
                );
                tracing::debug!(took_ms = ms(step), "report built");
                let step = Instant::now();
                // the last handle on the connection goes unless a collector still holds it
                drop(make);
                tracing::debug!(took_ms = ms(step), "connection released");
                report
            });
            let result = HostResult {
                target,
                outcome,
                took: started.elapsed(),
            };
            progress.done(&result);
            let step = Instant::now();
            on_done(&result);
            tracing::debug!(
                took_ms = ms(step),
                "report handed on (printed or delivered)"
            );
            drop(place);
            let kept = HostSummary::of(&result);
            drop(result);
            let done = {
                let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
                results.push(kept);
                results.len()
            };
            // hand the pages the finished hosts freed back to the system now and then (freed
            // chunks amid the heap stay in RSS otherwise)
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            if done % 64 == 0 {
                // SAFETY: malloc_trim only returns free memory to the system.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
            #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
            let _ = done;
        });
    }
    hosts.join();
    progress.finish();
    connector.finish();
    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    results.sort_by(|a, b| a.name.cmp(&b.name));
    results
}

/// Hosts done, failed, rate: a line redrawn in place on a terminal; a log line per host otherwise.
struct Progress {
    total: usize,
    done: AtomicUsize,
    failed: AtomicUsize,
    started: Instant,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn done(&self, result: &HostResult) {
        let HostResult {
            target,
            outcome,
            took,
        } = result;
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let failed_plugins = match outcome {
            Ok(r) => r.plugins.values().filter(|p| !p.is_ok()).count(),
            Err(_) => 0,
        };
        let failed = match outcome {
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed) + 1,
            Ok(_) => self.failed.load(Ordering::Relaxed),
        };
        if self.tty {
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            eprint!(
                "\r\x1b[2K{done}/{} hosts, {failed} failed, {rate:.1} hosts/s",
                self.total
            );
        } else {
            match outcome {
                Ok(_) => {
                    tracing::info!(host = %target.name, took_ms = took.as_millis() as u64, failed_plugins, outcome = "ok", "host collected")
                }
                Err(f) => {
                    tracing::warn!(host = %target.name, took_ms = took.as_millis() as u64, outcome = %f.kind, error = %f.message, "host failed")
                }
            }
        }
    }

    fn finish(&self) {
        if self.tty && self.total > 0 {
            eprintln!();
        }
    }
}

/// The closing summary: ok, failed with reason, duration.
pub fn summary(results: &[HostSummary], took: Duration) -> String {
    let ok = results.iter().filter(|r| r.outcome.is_ok()).count();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut lines = Vec::new();
    for HostSummary { name, outcome, .. } in results {
        if let Err(f) = outcome {
            *by_kind.entry(f.kind.as_str()).or_default() += 1;
            lines.push(format!("  {name}: {} ({})", f.message, f.kind));
        }
    }
    let kinds = by_kind
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "{} hosts: {ok} ok, {} failed{} in {:.2} s",
        results.len(),
        results.len() - ok,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({kinds})")
        },
        took.as_secs_f64()
    );
    for l in lines {
        text.push('\n');
        text.push_str(&l);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_address_and_port() {
        let t = RemoteTarget::parse("web-01").expect("parses");
        assert_eq!(
            (t.name.as_str(), t.address.as_str(), t.port),
            ("web-01", "web-01", None)
        );
        let t = RemoteTarget::parse("web-01=10.0.0.5:2222").expect("parses");
        assert_eq!(
            (t.name.as_str(), t.address.as_str(), t.port),
            ("web-01", "10.0.0.5", Some(2222))
        );
        let t = RemoteTarget::parse("v6=[fd00::5]:22").expect("parses");
        assert_eq!((t.address.as_str(), t.port), ("fd00::5", Some(22)));
        assert!(RemoteTarget::parse("web=10.0.0.5:ssh").is_err());
    }
}
