//! known_hosts, parsed once and shared by every connection of a fan-out.
//!
//! Understands OpenSSH's format: comma-separated host patterns (`*`, `?`, `!negation`,
//! `[host]:port`), hashed names (`|1|salt|hmac`), `@revoked`; `@cert-authority` lines are skipped
//! (host certificates are not supported). Unparsable lines are skipped, as OpenSSH does.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::error::SetupError;

/// What to do with a host whose key is not in known_hosts. A changed key is refused by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts. The file must exist.
    Strict,
    /// Trust on first use: record an unknown host's key (append to the file), then be strict.
    /// The file is created on first append if missing.
    AcceptNew,
}

/// The parsed known_hosts file and the policy for hosts not in it. Share one (`&KnownHosts` or
/// `Arc<KnownHosts>`) across all connections: lookups take a read lock, appends a write lock.
#[derive(Debug)]
pub struct KnownHosts {
    path: PathBuf,
    policy: HostKeyPolicy,
    entries: RwLock<Vec<Entry>>,
    append: Mutex<()>,
}

#[derive(Debug)]
struct Entry {
    hosts: HostPatterns,
    key: Vec<u8>,
    revoked: bool,
    line: usize,
}

#[derive(Debug)]
enum HostPatterns {
    /// Lower-cased patterns; `negated` ones exclude.
    Plain(Vec<(bool, String)>),
    Hashed {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

/// The outcome of looking a presented key up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Known,
    Revoked,
    /// Other keys are recorded for this host; the first one's line number.
    Changed {
        line: usize,
    },
    Unknown,
}

impl KnownHosts {
    /// Read and parse the file once. With [`HostKeyPolicy::AcceptNew`] a missing file is an empty
    /// one; with [`HostKeyPolicy::Strict`] it is an error.
    pub fn load(path: impl Into<PathBuf>, policy: HostKeyPolicy) -> Result<KnownHosts, SetupError> {
        let path = path.into();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && policy == HostKeyPolicy::AcceptNew =>
            {
                String::new()
            }
            Err(source) => {
                return Err(SetupError::Read {
                    what: "known_hosts file",
                    path,
                    source,
                })
            }
        };
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| parse_line(line, i + 1))
            .collect();
        Ok(KnownHosts {
            path,
            policy,
            entries: RwLock::new(entries),
            append: Mutex::new(()),
        })
    }

    /// The file this was read from (and appends go to).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy(&self) -> HostKeyPolicy {
        self.policy
    }

    /// How many key lines are known (parsed at load plus recorded since).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        // a panic while holding the lock cannot leave the Vec half-written: use it anyway
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The key types recorded for any of `names` (e.g. `ssh-ed25519`), in file order, unique.
    pub(crate) fn key_types(&self, names: &[String]) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for entry in self.read().iter() {
            if entry.revoked || !names.iter().any(|n| entry.hosts.matches(n)) {
                continue;
            }
            if let Some(t) = key_type_of(&entry.key) {
                if !types.iter().any(|x| x == &t) {
                    types.push(t);
                }
            }
        }
        types
    }

    /// Look the presented key blob up under every name the host goes by.
    pub(crate) fn verdict(&self, names: &[String], key: &[u8]) -> Verdict {
        let entries = self.read();
        let mut changed = None;
        let mut known = false;
        for entry in entries.iter() {
            if !names.iter().any(|n| entry.hosts.matches(n)) {
                continue;
            }
            if entry.key == key {
                if entry.revoked {
                    return Verdict::Revoked;
                }
                known = true;
            } else if !entry.revoked && changed.is_none() {
                changed = Some(entry.line);
            }
        }
        match (known, changed) {
            (true, _) => Verdict::Known,
            (false, Some(line)) => Verdict::Changed { line },
            (false, None) => Verdict::Unknown,
        }
    }

    /// Record a key for a host first seen (AcceptNew): append `names key_type base64` to the file
    /// and to the parsed entries. A second caller for the same host finds it already recorded.
    pub(crate) fn record(&self, names: &[String], key: &[u8]) -> std::io::Result<Verdict> {
        let _guard = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let verdict = self.verdict(names, key);
        if verdict != Verdict::Unknown {
            return Ok(verdict);
        }
        let key_type = key_type_of(key).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "host key blob has no type")
        })?;
        let line = format!(
            "{} {} {}\n",
            names.join(","),
            key_type,
            STANDARD.encode(key)
        );
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(line.as_bytes())?;
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let number = entries.iter().map(|e| e.line).max().unwrap_or(0) + 1;
        entries.push(Entry {
            hosts: HostPatterns::Plain(names.iter().map(|n| (false, n.to_lowercase())).collect()),
            key: key.to_vec(),
            revoked: false,
            line: number,
        });
        Ok(Verdict::Known)
    }
}

/// The names a host is looked up under: its name and its address, `[x]:port` off port 22.
pub(crate) fn lookup_names(host: &str, address: &str, port: u16) -> Vec<String> {
    let mut names = Vec::with_capacity(2);
    for n in [host, address] {
        let n = if port == 22 {
            n.to_lowercase()
        } else {
            format!("[{}]:{port}", n.to_lowercase())
        };
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The key type string at the start of an SSH public key blob.
pub(crate) fn key_type_of(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    String::from_utf8(name.to_vec()).ok()
}

fn parse_line(line: &str, number: usize) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let mut revoked = false;
    if first.starts_with('@') {
        match first {
            "@revoked" => revoked = true,
            _ => return None, // @cert-authority: certificates are not supported
        }
        first = fields.next()?;
    }
    let key_type = fields.next()?;
    let key = STANDARD.decode(fields.next()?).ok()?;
    // the blob must say the type the line says
    if key_type_of(&key)? != key_type {
        return None;
    }
    let hosts = if let Some(hashed) = first.strip_prefix("|1|") {
        let (salt, hash) = hashed.split_once('|')?;
        HostPatterns::Hashed {
            salt: STANDARD.decode(salt).ok()?,
            hash: STANDARD.decode(hash).ok()?,
        }
    } else {
        HostPatterns::Plain(
            first
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| match p.strip_prefix('!') {
                    Some(p) => (true, p.to_lowercase()),
                    None => (false, p.to_lowercase()),
                })
                .collect(),
        )
    };
    Some(Entry {
        hosts,
        key,
        revoked,
        line: number,
    })
}

impl HostPatterns {
    fn matches(&self, name: &str) -> bool {
        match self {
            HostPatterns::Plain(patterns) => {
                let mut matched = false;
                for (negated, pattern) in patterns {
                    if wildcard_match(pattern.as_bytes(), name.as_bytes()) {
                        if *negated {
                            return false;
                        }
                        matched = true;
                    }
                }
                matched
            }
            HostPatterns::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
        }
    }
}

/// OpenSSH's `*` (any run) and `?` (any one byte) host pattern match.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIIRdcbNDaG9lD20wJ5DV6cvyuS6AhGvYvBEwo8Uv5KHZ";

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"node-*", b"node-001"));
        assert!(wildcard_match(b"10.251.0.?", b"10.251.0.2"));
        assert!(!wildcard_match(b"10.251.0.?", b"10.251.0.22"));
        assert!(wildcard_match(b"*", b"x"));
        assert!(!wildcard_match(b"a*b", b"acbx"));
    }

    #[test]
    fn plain_hashed_negated_and_revoked() {
        let key = STANDARD.decode(KEY).expect("test key");
        // |1| line made with: ssh-keygen -H (salt and hmac-sha1 of "node-009")
        let mut mac = Hmac::<Sha1>::new_from_slice(b"0123456789abcdef0123").expect("hmac");
        mac.update(b"node-009");
        let hashed = format!(
            "|1|{}|{}",
            STANDARD.encode(b"0123456789abcdef0123"),
            STANDARD.encode(mac.finalize().into_bytes())
        );
        let text = format!(
            "# comment\nnode-001,10.0.0.2 ssh-ed25519 {KEY}\n{hashed} ssh-ed25519 {KEY}\nnode-*,!node-005 ssh-ed25519 {KEY}\n@revoked node-007 ssh-ed25519 {KEY}\ngarbage\n"
        );
        let entries: Vec<Entry> = text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| parse_line(l, i + 1))
            .collect();
        assert_eq!(entries.len(), 4);
        let kh = KnownHosts {
            path: PathBuf::from("/nonexistent"),
            policy: HostKeyPolicy::Strict,
            entries: RwLock::new(entries),
            append: Mutex::new(()),
        };
        assert_eq!(kh.verdict(&names(&["node-001"]), &key), Verdict::Known);
        assert_eq!(kh.verdict(&names(&["x", "10.0.0.2"]), &key), Verdict::Known);
        assert_eq!(kh.verdict(&names(&["node-009"]), &key), Verdict::Known);
        assert_eq!(kh.verdict(&names(&["node-005"]), &key), Verdict::Unknown);
        assert_eq!(kh.verdict(&names(&["node-007"]), &key), Verdict::Revoked);
        assert_eq!(kh.verdict(&names(&["other"]), &key), Verdict::Unknown);
        let mut other = key.clone();
        let last = other.len() - 1;
        other[last] ^= 1;
        assert_eq!(
            kh.verdict(&names(&["node-001"]), &other),
            Verdict::Changed { line: 2 }
        );
        assert_eq!(kh.key_types(&names(&["node-001"])), vec!["ssh-ed25519"]);
    }

    #[test]
    fn names_off_port_22() {
        assert_eq!(
            lookup_names("Node-1", "10.0.0.2", 22),
            names(&["node-1", "10.0.0.2"])
        );
        assert_eq!(
            lookup_names("n", "10.0.0.2", 2222),
            names(&["[n]:2222", "[10.0.0.2]:2222"])
        );
    }
}
