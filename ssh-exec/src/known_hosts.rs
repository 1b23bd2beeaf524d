//! known_hosts, parsed once and shared by every connection of a fan-out.
//!
//! Understands OpenSSH's format: comma-separated host patterns (`*`, `?`, `!negation`,
//! `[host]:port`), hashed names (`|1|salt|hmac`), `@revoked`; `@cert-authority` lines are skipped
//! (host certificates are not supported). Unparsable lines are skipped, as OpenSSH does.
//!
//! Looked up without a scan of the file: plain names (no wildcard, no negation) are a `HashMap`
//! from name to lines; hashed lines (one salt each: every line must be hashed for a name) are
//! hashed once per name, with each line's HMAC key set up at load, and the lines that matched
//! are kept per name; only lines with wildcards or negations are matched one by one.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

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
    entries: RwLock<Table>,
    /// The hashed lines that match a name, by name (hashed lines are only read at load, so an
    /// answer stays right).
    hashed_matches: Mutex<HashMap<String, Arc<[usize]>>>,
    append: Mutex<()>,
}

/// The lines, and where to find a name's.
#[derive(Debug, Default)]
struct Table {
    entries: Vec<Entry>,
    /// Plain names (lower-cased) of lines with neither wildcards nor negations → their indices.
    exact: HashMap<String, Vec<usize>>,
    /// Lines with a wildcard or a negated pattern: matched one by one.
    patterns: Vec<usize>,
    /// Hashed lines.
    hashed: Vec<usize>,
}

impl Table {
    fn new(entries: Vec<Entry>) -> Table {
        let mut table = Table::default();
        for entry in entries {
            table.push(entry);
        }
        table
    }

    fn push(&mut self, entry: Entry) {
        let index = self.entries.len();
        match &entry.hosts {
            HostPatterns::Hashed { .. } => self.hashed.push(index),
            HostPatterns::Plain(patterns) => {
                let wild = patterns
                    .iter()
                    .any(|(negated, p)| *negated || p.contains(['*', '?']));
                if wild {
                    self.patterns.push(index);
                } else {
                    for (_, name) in patterns {
                        let lines = self.exact.entry(name.clone()).or_default();
                        if lines.last() != Some(&index) {
                            lines.push(index);
                        }
                    }
                }
            }
        }
        self.entries.push(entry);
    }

    /// The hashed lines that match `name`: one HMAC per hashed line.
    fn hashed_matching(&self, name: &str) -> Vec<usize> {
        self.hashed
            .iter()
            .copied()
            .filter(|&i| self.entries[i].hosts.matches(name))
            .collect()
    }
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
        /// HMAC-SHA1 keyed with the line's salt (the key set up once, cloned per name).
        keyed: Box<Hmac<Sha1>>,
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
        Ok(KnownHosts::from_entries(path, policy, entries))
    }

    fn from_entries(path: PathBuf, policy: HostKeyPolicy, entries: Vec<Entry>) -> KnownHosts {
        KnownHosts {
            path,
            policy,
            entries: RwLock::new(Table::new(entries)),
            hashed_matches: Mutex::new(HashMap::new()),
            append: Mutex::new(()),
        }
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
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        // a panic while holding the lock cannot leave the table half-written: use it anyway
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The indices of the lines that match any of `names`, in file order.
    fn matching(&self, table: &Table, names: &[String]) -> Vec<usize> {
        let mut lines: Vec<usize> = Vec::new();
        for name in names {
            if let Some(exact) = table.exact.get(name) {
                lines.extend(exact);
            }
            lines.extend(
                table
                    .patterns
                    .iter()
                    .copied()
                    .filter(|&i| table.entries[i].hosts.matches(name)),
            );
            if !table.hashed.is_empty() {
                lines.extend(self.hashed_for(table, name).iter().copied());
            }
        }
        lines.sort_unstable();
        lines.dedup();
        lines
    }

    /// The hashed lines matching `name`, worked out once per name.
    fn hashed_for(&self, table: &Table, name: &str) -> Arc<[usize]> {
        let cache = || {
            self.hashed_matches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if let Some(hit) = cache().get(name) {
            return Arc::clone(hit);
        }
        // hashed outside the cache's lock: other hosts' lookups go on meanwhile
        let found: Arc<[usize]> = table.hashed_matching(name).into();
        cache().insert(name.to_string(), Arc::clone(&found));
        found
    }

    /// The key types recorded for any of `names` (e.g. `ssh-ed25519`), in file order, unique.
    pub(crate) fn key_types(&self, names: &[String]) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        let table = self.read();
        for i in self.matching(&table, names) {
            let entry = &table.entries[i];
            if entry.revoked {
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
        let table = self.read();
        let mut changed = None;
        let mut known = false;
        for i in self.matching(&table, names) {
            let entry = &table.entries[i];
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
        let mut table = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let number = table.entries.iter().map(|e| e.line).max().unwrap_or(0) + 1;
        table.push(Entry {
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
        let salt = STANDARD.decode(salt).ok()?;
        HostPatterns::Hashed {
            keyed: Box::new(Hmac::<Sha1>::new_from_slice(&salt).ok()?),
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
            HostPatterns::Hashed { keyed, hash } => {
                let mut mac = (**keyed).clone();
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
        let kh = KnownHosts::from_entries(
            PathBuf::from("/nonexistent"),
            HostKeyPolicy::Strict,
            entries,
        );
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

    fn hashed_name(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).expect("hmac");
        mac.update(name.as_bytes());
        format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn ports_cert_authority_file_order_case_and_recorded_lines() {
        let key = STANDARD.decode(KEY).expect("test key");
        let mut other = key.clone();
        let last = other.len() - 1;
        other[last] ^= 1;
        let other_b64 = STANDARD.encode(&other);
        let mut third = key.clone();
        third[last] ^= 2;
        let hashed = hashed_name("[node-012]:2200", b"salt-of-twenty-bytes");
        let text = format!(
            "[node-010]:2222 ssh-ed25519 {KEY}\n\
             @cert-authority *.example.org ssh-ed25519 {KEY}\n\
             {hashed} ssh-ed25519 {KEY}\n\
             web-*,db-1 ssh-ed25519 {other_b64}\n\
             db-1 ssh-ed25519 {KEY}\n\
             Node-Upper ssh-ed25519 {KEY}\n"
        );
        let dir = std::env::temp_dir().join(format!("kh-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("known_hosts");
        std::fs::write(&path, text).expect("write");
        let kh = KnownHosts::load(&path, HostKeyPolicy::AcceptNew).expect("load");
        assert_eq!(kh.len(), 5, "the @cert-authority line is skipped");
        let v = |host: &str, port: u16, k: &[u8]| kh.verdict(&lookup_names(host, "", port), k);
        assert_eq!(v("node-010", 2222, &key), Verdict::Known);
        assert_eq!(v("node-010", 22, &key), Verdict::Unknown);
        assert_eq!(v("node-010", 2200, &key), Verdict::Unknown);
        assert_eq!(v("a.example.org", 22, &key), Verdict::Unknown);
        for _ in 0..2 {
            // hashed, then from the per-name cache
            assert_eq!(v("node-012", 2200, &key), Verdict::Known);
            assert_eq!(v("node-012", 2200, &other), Verdict::Changed { line: 3 });
            assert_eq!(v("node-012", 22, &key), Verdict::Unknown);
        }
        assert_eq!(v("db-1", 22, &key), Verdict::Known);
        // the first line in file order with another key: the pattern line before the exact one
        assert_eq!(v("db-1", 22, &third), Verdict::Changed { line: 4 });
        assert_eq!(v("web-9", 22, &key), Verdict::Changed { line: 4 });
        assert_eq!(
            kh.key_types(&lookup_names("web-9", "", 22)),
            vec!["ssh-ed25519"]
        );
        assert_eq!(v("NODE-UPPER", 22, &key), Verdict::Known);
        // a recorded host is found by the index too, and under its address
        let new = lookup_names("new-1", "10.9.9.9", 22);
        assert_eq!(kh.verdict(&new, &key), Verdict::Unknown);
        assert_eq!(kh.record(&new, &key).expect("recorded"), Verdict::Known);
        assert_eq!(kh.verdict(&names(&["10.9.9.9"]), &key), Verdict::Known);
        assert_eq!(
            kh.verdict(&names(&["new-1"]), &other),
            Verdict::Changed { line: 7 }
        );
        let again = KnownHosts::load(&path, HostKeyPolicy::Strict).expect("load");
        assert_eq!(again.verdict(&names(&["new-1"]), &key), Verdict::Known);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `cargo test -p ssh-exec --release --lib -- --ignored --nocapture lookup_cost`: what one
    /// connection's lookups (`key_types` + `verdict`, under the host's name and address) cost in a
    /// known_hosts of 20,000 lines, plain and hashed (`ssh-keygen -H`), for names looked up the
    /// first time and again.
    #[test]
    #[ignore = "a micro benchmark: run it on purpose, in release"]
    fn lookup_cost() {
        const LINES: usize = 20_000;
        let key = STANDARD.decode(KEY).expect("test key");
        let name = |i: usize| format!("host-{i:05}");
        let addr = |i: usize| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
        let hashed = |n: &str, i: usize| {
            let salt = format!("salt-{i:015}");
            let mut mac = Hmac::<Sha1>::new_from_slice(salt.as_bytes()).expect("hmac");
            mac.update(n.as_bytes());
            format!(
                "|1|{}|{}",
                STANDARD.encode(salt.as_bytes()),
                STANDARD.encode(mac.finalize().into_bytes())
            )
        };
        let dir = std::env::temp_dir().join(format!("kh-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut plain = String::new();
        let mut hashed_text = String::new();
        for i in 0..LINES {
            plain.push_str(&format!("{},{} ssh-ed25519 {KEY}\n", name(i), addr(i)));
            hashed_text.push_str(&format!("{} ssh-ed25519 {KEY}\n", hashed(&name(i), 2 * i)));
            hashed_text.push_str(&format!(
                "{} ssh-ed25519 {KEY}\n",
                hashed(&addr(i), 2 * i + 1)
            ));
        }
        // the hashed file: 20,000 lines (10,000 hosts, name and address each on its own line)
        let hashed_text: String = hashed_text
            .lines()
            .take(LINES)
            .map(|l| format!("{l}\n"))
            .collect();
        for (label, text, hosts) in [("plain", plain, LINES), ("hashed", hashed_text, LINES / 2)] {
            let path = dir.join(label);
            std::fs::write(&path, text).expect("write");
            let kh = KnownHosts::load(&path, HostKeyPolicy::Strict).expect("load");
            assert_eq!(kh.len(), LINES);
            let lookups = 200;
            let pick = |k: usize| (k * 7919) % hosts;
            for round in ["first", "again"] {
                let started = std::time::Instant::now();
                for k in 0..lookups {
                    let i = pick(k);
                    let names = lookup_names(&name(i), &addr(i), 22);
                    assert_eq!(kh.key_types(&names), vec!["ssh-ed25519"]);
                    assert_eq!(kh.verdict(&names, &key), Verdict::Known);
                }
                let per = started.elapsed() / lookups as u32;
                println!("known_hosts of {LINES} {label} lines, names looked up {round}: {per:?} per connection (key_types + verdict)");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
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
