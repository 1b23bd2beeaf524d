//! The client's side of the host identity rule (fixed; `docs/contracts.md`): the cert file keeps the
//! last hostname the API accepted, and each answer of the API decides what happens to it.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use auto_proto::{IngestResponse, Problem, Report};

#[derive(Debug, Clone)]
pub struct CertFile {
    pub path: PathBuf,
}

impl CertFile {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The hostname the API knows this machine by; `None` for a new machine (no file, or empty).
    pub fn read(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read cert file {}", self.path.display()))
            }
        }
    }

    /// Replaces the name atomically (write, fsync, rename).
    pub fn write(&self, hostname: &str) -> Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| {
            format!("cannot create the cert file's directory {}", dir.display())
        })?;
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write cert file {}", tmp.display()))?;
        f.write_all(format!("{hostname}\n").as_bytes())
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write cert file {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot replace cert file {}", self.path.display()))
    }
}

/// Acts on an accepted report (201 or 200): writes the name the API now uses, except when a rename
/// was refused (warning `hostname_taken`), where the cert keeps the old name.
pub fn accepted<D>(
    cert: &CertFile,
    report: &Report<D>,
    status: u16,
    body: &IngestResponse,
) -> Result<()> {
    let refused_rename = body.warnings.iter().find(|w| w.code == "hostname_taken");
    if let Some(w) = refused_rename {
        tracing::error!(
            host = %body.hostname,
            wanted = %report.hostname,
            report_id = %report.report_id,
            "rename refused: the name {} is taken by another host; the data was applied to {} and the cert keeps {} ({})",
            report.hostname, body.hostname, body.hostname, w.message
        );
        return Ok(());
    }
    match (status, body.outcome.as_str()) {
        (201, _) => {
            tracing::info!(host = %body.hostname, report_id = %report.report_id, outcome = "created", "new host registered with the CMDB")
        }
        (_, "renamed") => tracing::info!(
            host = %body.hostname,
            previous = report.previous_hostname.as_deref().unwrap_or(""),
            report_id = %report.report_id,
            outcome = "renamed",
            "host renamed in the CMDB"
        ),
        _ => {
            tracing::info!(host = %body.hostname, report_id = %report.report_id, outcome = %body.outcome, "report accepted")
        }
    }
    if cert.read()?.as_deref() != Some(body.hostname.as_str()) {
        cert.write(&body.hostname)?;
    }
    Ok(())
}

/// Acts on a 409: the name is taken by another host and nothing was recorded; the cert is untouched.
pub fn name_taken<D>(report: &Report<D>, problem: &Problem) {
    tracing::error!(
        host = %report.hostname,
        report_id = %report.report_id,
        outcome = "name_taken",
        "the CMDB refused this machine: the hostname {} already belongs to another host, nothing was recorded ({}); rename this machine or remove the other host",
        report.hostname,
        problem.detail
    );
}
