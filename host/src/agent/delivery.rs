//! Talking to auto-server: signed requests (the scheme of `auto_proto::sign`), retries with
//! backoff and jitter for network errors and 5xx (never for 4xx), and what an answer means.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};
use auto_proto::{sign, IngestResponse, PendingHost, Problem};

/// The agent's key: its name and secret, as `auto-server keys create NAME` printed them.
#[derive(Clone)]
pub struct AgentKey {
    pub id: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentKey({}, secret hidden)", self.id)
    }
}

impl AgentKey {
    /// Reads the secret from a file (trailing white space ignored); refuses a file others can read.
    pub fn from_file(id: &str, path: &Path) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        if meta.mode() & 0o077 != 0 {
            bail!(
                "key file {} is readable by other users (mode {:o}); run chmod 600 on it",
                path.display(),
                meta.mode() & 0o777
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        let secret = text.trim();
        if secret.is_empty() {
            bail!("key file {} is empty", path.display());
        }
        Ok(Self {
            id: id.to_string(),
            secret: secret.as_bytes().to_vec(),
        })
    }
}

/// How a request failed.
#[derive(Debug)]
pub enum Failure {
    /// The network, a timeout or a 5xx: worth retrying later; the report is kept.
    Transient(String),
    /// The server refused it (4xx) and says why.
    Refused { status: u16, problem: Problem },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(m) => write!(f, "{m}"),
            Failure::Refused { status, problem } => {
                write!(f, "the server refused it with {status} {}", problem.title)?;
                if !problem.detail.is_empty() {
                    write!(f, ": {}", problem.detail)?;
                }
                Ok(())
            }
        }
    }
}

/// What the server said to a report.
#[derive(Debug)]
pub enum Answer {
    /// 201 or 200.
    Accepted {
        status: u16,
        body: IngestResponse,
    },
    Refused {
        status: u16,
        problem: Problem,
    },
}

#[derive(Debug, Clone)]
pub struct Retry {
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            first_backoff: Duration::from_millis(300),
        }
    }
}

pub struct ApiClient {
    base: String,
    key: Option<AgentKey>,
    agent: ureq::Agent,
    retry: Retry,
}

impl ApiClient {
    pub fn new(base: &str, key: Option<AgentKey>, retry: Retry) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("api URL {base:?} must start with http:// or https://");
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build();
        Ok(Self {
            base,
            key,
            agent,
            retry,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One signed request, no retry.
    fn send_once(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        gzip: bool,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .agent
            .request(method, &url)
            .set("content-type", "application/json");
        if gzip {
            req = req.set("content-encoding", "gzip");
        }
        if let Some(key) = &self.key {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let sig = sign::signature(&key.secret, method, path, ts, &nonce, body);
            req = req
                .set(sign::HEADER_KEY, &key.id)
                .set(sign::HEADER_TIMESTAMP, &ts.to_string())
                .set(sign::HEADER_NONCE, &nonce)
                .set(sign::HEADER_SIGNATURE, &sig);
        }
        let result = if method == "GET" {
            req.call()
        } else {
            req.send_bytes(body)
        };
        match result {
            Ok(resp) => {
                let status = resp.status();
                Ok((status, read_body(resp)))
            }
            Err(ureq::Error::Status(status, resp)) => {
                let body = read_body(resp);
                if status >= 500 {
                    return Err(Failure::Transient(format!(
                        "{method} {url}: server error {status}: {}",
                        String::from_utf8_lossy(&body)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    )));
                }
                let problem =
                    serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| Problem {
                        type_: String::new(),
                        title: format!("HTTP {status}"),
                        status,
                        detail: String::from_utf8_lossy(&body).chars().take(200).collect(),
                        code: String::new(),
                    });
                Err(Failure::Refused { status, problem })
            }
            Err(ureq::Error::Transport(t)) => Err(Failure::Transient(format!("{method} {t}"))),
        }
    }

    /// Retries transient failures with exponential backoff and jitter; a 4xx is final at once.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        gzip: bool,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let mut backoff = self.retry.first_backoff;
        let mut attempt = 1;
        loop {
            match self.send_once(method, path, body, gzip) {
                Err(Failure::Transient(m)) if attempt < self.retry.attempts => {
                    let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
                    tracing::warn!(attempt, error = %m, retry_in_ms = (backoff + jitter).as_millis() as u64, "request failed, retrying");
                    std::thread::sleep(backoff + jitter);
                    backoff *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// POSTs a report (as its exact JSON bytes).
    /// A body over [`GZIP_OVER`] bytes travels gzip-compressed (`Content-Encoding: gzip`; the
    /// signature covers the compressed bytes, as sent).
    pub fn post_report(&self, body: &[u8]) -> Result<Answer, Failure> {
        let compressed = (body.len() > GZIP_OVER).then(|| gzip(body)).flatten();
        let sent = match &compressed {
            Some(c) => self.send("POST", "/api/v1/reports", c, true),
            None => self.send("POST", "/api/v1/reports", body, false),
        };
        match sent {
            Ok((status, bytes)) => {
                let body: IngestResponse = serde_json::from_slice(&bytes).map_err(|e| {
                    Failure::Transient(format!(
                        "the server's answer ({status}) is not an ingest response: {e}"
                    ))
                })?;
                Ok(Answer::Accepted { status, body })
            }
            Err(Failure::Refused { status, problem }) if status == 409 => {
                Ok(Answer::Refused { status, problem })
            }
            Err(e) => Err(e),
        }
    }

    /// A signed GET of any API path (`auto-client api PATH`), as JSON.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let (_, bytes) = self
            .send("GET", path, b"", false)
            .map_err(|e| anyhow::anyhow!("GET {path}: {e}"))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("GET {path}: the answer is not JSON"))
    }

    /// The hosts due for collection.
    pub fn pending_hosts(&self) -> Result<Vec<PendingHost>> {
        let (_, bytes) = self
            .send("GET", "/api/v1/hosts/pending", b"", false)
            .map_err(|e| anyhow::anyhow!("cannot get the pending hosts: {e}"))?;
        serde_json::from_slice(&bytes).context("the pending hosts answer is not a list of hosts")
    }
}

/// Reports larger than this are sent gzip-compressed.
pub const GZIP_OVER: usize = 1024;

fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

fn read_body(resp: ureq::Response) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    let _ = resp.into_reader().take(1 << 20).read_to_end(&mut buf);
    buf
}
