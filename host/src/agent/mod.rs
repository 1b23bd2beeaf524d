//! Agent mode: collect this machine, deliver the report (spool first), act on the answer; once, or
//! every interval until SIGTERM or SIGINT.

pub mod delivery;
pub mod identity;
pub mod lists;
pub mod spool;
pub mod textfile;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use auto_proto::Report;
use serde::Serialize;

use crate::{
    agent::delivery::{Answer, ApiClient, Failure},
    agent::identity::CertFile,
    agent::spool::Spool,
    local,
    plugins::file::PluginsFile,
    plugins::registry::{LoadOptions, RegistryCache},
    Isolation, Outcome,
};

/// Everything one agent cycle needs.
pub struct Agent {
    pub api: ApiClient,
    pub cert: CertFile,
    pub spool: Spool,
    pub plugins_path: PathBuf,
    pub load: LoadOptions,
    pub isolation: Isolation,
    pub cache: RegistryCache,
    pub lists: lists::ListState,
    /// A node_exporter textfile written after every cycle (`textfile`).
    pub textfile: Option<PathBuf>,
}

/// What happened to one report.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The server applied it; `resend`: lists it wants in full next time.
    Applied { resend: Vec<String> },
    /// The server refused it for good (name taken, malformed): logged, not retried.
    Refused,
    /// Not delivered: keep it and stop sending for this cycle.
    Keep,
}

/// The one delivery policy, for agent, ssh and salt mode alike:
/// - accepted (201/200): applied; with a `cert` (agent mode) the identity rule's answer goes to it;
/// - 409, the name belongs to another host: refused and logged (it will never be accepted so);
/// - 401/403, the key: kept in the spool (a person fixes the key; the report is still good);
/// - any other 4xx (400 malformed, 413 too large): a copy is quarantined in the spool for a
///   person to read, and it is not retried;
/// - unreachable, or 5xx after the retries (a full disk on the server is a 503): kept.
pub fn send<D: Serialize>(
    api: &ApiClient,
    spool: &Spool,
    cert: Option<&CertFile>,
    report: &Report<D>,
) -> Delivery {
    let body = match serde_json::to_vec(report) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(report_id = %report.report_id, error = %e, "cannot serialise the report");
            return Delivery::Refused;
        }
    };
    match api.post_report(&body) {
        Ok(Answer::Accepted { status, body }) => {
            for w in &body.warnings {
                tracing::error!(host = %body.hostname, code = %w.code, "{}", w.message);
            }
            tracing::info!(host = %body.hostname, outcome = %body.outcome, report_id = %report.report_id, "report accepted");
            if let Some(cert) = cert {
                if let Err(e) = identity::accepted(cert, report, status, &body) {
                    tracing::error!(error = %format!("{e:#}"), "cannot update the cert file");
                }
            }
            Delivery::Applied {
                resend: body.resend,
            }
        }
        Ok(Answer::Refused { problem, .. }) => {
            identity::name_taken(report, &problem);
            Delivery::Refused
        }
        Err(Failure::Refused {
            status: status @ (401 | 403),
            problem,
        }) => {
            tracing::error!(
                api = %api.base(),
                host = %report.hostname,
                report_id = %report.report_id,
                status,
                reason = %problem.detail,
                "the server refused this agent's signature: check key_id and key_file (auto-server keys list); the report is kept in the spool"
            );
            Delivery::Keep
        }
        Err(Failure::Refused { status, problem }) => {
            tracing::error!(
                host = %report.hostname,
                report_id = %report.report_id,
                status,
                code = %problem.code,
                reason = %problem.detail,
                "the server rejected the report: a copy is quarantined in the spool"
            );
            if let Ok(path) = spool.put(report) {
                let item = spool::Spooled {
                    path,
                    bytes: body.len() as u64,
                };
                spool.quarantine(&item, &problem.detail);
            }
            Delivery::Refused
        }
        Err(Failure::Transient(message)) => {
            tracing::warn!(api = %api.base(), host = %report.hostname, report_id = %report.report_id, error = %message, "the API cannot take it now (unreachable, or 5xx after retries): the report is kept in the spool");
            Delivery::Keep
        }
    }
}

/// Sends the spool oldest first; `cert` (agent mode) gives each report the name the API knows
/// this machine by *now*. True when the spool is empty afterwards.
pub fn send_spool(api: &ApiClient, spool: &Spool, cert: Option<&CertFile>) -> Result<bool> {
    for item in spool.list()? {
        let mut report = match spool.read(&item) {
            Ok(r) => r,
            Err(e) => {
                spool.quarantine(&item, &format!("{e:#}"));
                continue;
            }
        };
        if let Some(cert) = cert {
            report.previous_hostname = cert.read()?;
        }
        match send(api, spool, cert, &report) {
            Delivery::Applied { .. } | Delivery::Refused => spool.remove(&item),
            Delivery::Keep => return Ok(false),
        }
    }
    Ok(true)
}

/// Delivers one host's report in ssh or salt mode; spools it when the API cannot take it now.
/// True when the server applied it.
pub fn send_remote_report<D: Serialize>(
    api: &ApiClient,
    spool: &Spool,
    report: &Report<D>,
) -> bool {
    match send(api, spool, None, report) {
        Delivery::Applied { .. } => true,
        Delivery::Refused => false,
        Delivery::Keep => {
            if let Err(e) = spool.put(report) {
                tracing::error!(host = %report.hostname, error = %format!("{e:#}"), "cannot spool the report: it is lost");
            }
            false
        }
    }
}

impl Agent {
    /// One cycle: re-read plugins.toml and the drop-in dirs, collect, send the spool, send this.
    pub fn cycle(&mut self) -> Result<Outcome> {
        let started = Instant::now();
        let specs = PluginsFile::load(&self.plugins_path)?.specs();
        let previous = self.cert.read()?;
        let (registry, report) =
            local::load_and_collect(&mut self.cache, specs, &self.load, previous, self.isolation);
        let mut outcome = local::report_outcome(&report, &registry);
        let for_textfile = self.textfile.as_ref().map(|_| report.clone());
        let delivered = self.deliver(report)?;
        if let (Some(path), Some(report)) = (&self.textfile, for_textfile) {
            if let Err(e) = textfile::write(path, &report, delivered) {
                tracing::warn!(error = %format!("{e:#}"), "textfile not written");
            }
        }
        if !delivered {
            outcome = outcome.worst(Outcome::PartialFailure);
        }

        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            delivered,
            outcome = outcome as u8,
            "agent cycle done"
        );
        Ok(outcome)
    }

    /// Sends the spool oldest first, then `report`; whatever cannot be sent now goes to the spool.
    /// True when this cycle's report was applied and nothing is left waiting.
    ///
    /// `previous_hostname` is filled in at send time from the cert: it is the name the API knows
    /// this machine by *now* (a report spooled before the first one was accepted would otherwise
    /// claim to be a new machine and be refused as a duplicate name).
    fn deliver(&self, mut report: Report) -> Result<bool> {
        if !send_spool(&self.api, &self.spool, Some(&self.cert))? {
            self.spool.put(&report)?;
            return Ok(false);
        }
        report.previous_hostname = self.cert.read()?;
        // Long lists the server holds as they are go by their digest; the spool keeps them whole.
        let sent = self.lists.slim(&report);
        match send(&self.api, &self.spool, Some(&self.cert), &sent) {
            Delivery::Applied { resend } => {
                self.lists.accepted(&report, &sent, &resend);
                Ok(true)
            }
            Delivery::Refused => Ok(false),
            Delivery::Keep => {
                self.spool.put(&report)?;
                Ok(false)
            }
        }
    }
}

/// Runs cycles every `interval` until SIGTERM or SIGINT, which end the loop after the current
/// cycle with exit code 0.
pub fn run_interval(agent: &mut Agent, interval: Duration) -> Result<Outcome> {
    every(interval, "agent", || agent.cycle())
}

/// Runs `cycle` every `interval` (agent mode, and ssh and salt mode's `run`) until SIGTERM or
/// SIGINT, which end the loop after the current cycle with exit code 0. A cycle that fails is
/// logged and the next one runs.
pub fn every(
    interval: Duration,
    mode: &str,
    mut cycle: impl FnMut() -> Result<Outcome>,
) -> Result<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    tracing::info!(interval = %humantime::format_duration(interval), mode, "agent started");
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if let Err(e) = cycle() {
            tracing::error!(error = %format!("{e:#}"), mode, "agent cycle failed");
        }
        while started.elapsed() < interval && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50).min(interval));
        }
    }
    tracing::info!(mode, "agent stopped by signal");
    Ok(Outcome::AllWell)
}
