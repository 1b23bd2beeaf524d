//! The `packages` collector: the installed software packages (dpkg, rpm, apk).
//!
//! One round trip: one `sh` script (see [`SCRIPT`]) runs, for each package manager whose tool or
//! database is on the target, one listing command under its own `==> NAME` section:
//! - `dpkg`: the `Package`, `Version`, `Architecture` and `Status` lines of `/var/lib/dpkg/status`
//!   (one `grep` in the C locale: 1 ms here, 2 ms in C.UTF-8, where `dpkg-query -W` took 53 ms;
//!   four `-e` patterns: one `-E` alternation cost GNU grep ~10 % more CPU, 1.05–1.24 against
//!   0.96–1.03 ms here, `perf stat -r 150`),
//!   else where that file cannot be read
//!   `dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\t${db:Status-Status}\n'`
//!   (one process for the whole database); packages removed but with their configuration left
//!   (`config-files`) and `not-installed` ones are skipped;
//! - `rpm`: `rpm -qa --queryformat '%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{INSTALLTIME}\t%{ARCH}\n'`
//!   (the formats are ohai's, so its recorded outputs are this collector's input as they are; rows
//!   whose tabs were turned into blanks are read too);
//! - `apk`: the `P:` (name), `V:` (version) and `A:` (arch) lines of `/lib/apk/db/installed`
//!   (one `grep`; apk's own `apk info -v` joins name and version with `-` and cannot be split).
//!
//! Its data (report schema 2): the fact `managers` (the managers that listed packages, e.g.
//! `["dpkg"]`) and the part list `packages` keyed by `["name", "arch", "version"]`: a part's id is
//! `NAME:ARCH` (`libc6:amd64`, `bash:x86_64`; `NAME` alone where the manager gives no arch), and
//! where one name and arch are installed more than once (rpm's install-only packages: several
//! `kernel` versions, `gpg-pubkey` keys) every one of them is `NAME:ARCH=VERSION`. Attributes:
//! `name`, `version` (dpkg's and apk's as they print it; rpm's `[EPOCH:]VERSION-RELEASE`), `arch`
//! and `manager`. An upgrade keeps the id and changes `version`: one change-log row per package
//! added, removed or upgraded.
//!
//! No package manager on the target makes the list `unavailable` with a reason; so does a listing
//! that failed, and a list longer than the server takes in one list (10,000 parts, see
//! `auto_proto::data::DataLimits`). Errors: only when the script printed nothing at all.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    time::Duration,
};

use plugin_api::{
    batch::{self, Section},
    data::DataLimits,
    export_collector,
    serde_json::{json, Value},
    CollectError, Data, Target,
};

/// The one command this collector runs. A manager that is absent prints no section; a listing's
/// stderr goes into its section (the parsers skip lines that are not package rows), so that a
/// failure can be told from an empty database.
pub const SCRIPT: &str = "PATH=\"$PATH:/usr/sbin:/sbin\"; \
if [ -r /var/lib/dpkg/status ]; then printf '==> dpkg-status\\n'; \
LC_ALL=C grep -e '^Package:' -e '^Version:' -e '^Architecture:' -e '^Status:' /var/lib/dpkg/status; \
elif command -v dpkg-query >/dev/null 2>&1; then printf '==> dpkg\\n'; \
dpkg-query -W -f '${Package}\\t${Version}\\t${Architecture}\\t${db:Status-Status}\\n' 2>&1; fi; \
if command -v rpm >/dev/null 2>&1; then printf '==> rpm\\n'; \
rpm -qa --queryformat '%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{INSTALLTIME}\\t%{ARCH}\\n' 2>&1; fi; \
if [ -r /lib/apk/db/installed ]; then printf '==> apk\\n'; LC_ALL=C grep -E '^[PVA]:' /lib/apk/db/installed; \
elif [ -e /lib/apk/db/installed ]; then printf '=!> apk permission denied\\n'; fi; \
printf '==> end\\n'";

/// A generous limit for listing thousands of packages on a slow disk; below the host's default
/// collector timeout would be too short for rpm on a cold cache, so plugins.toml gives this
/// collector 30 s.
const TIMEOUT: Duration = Duration::from_secs(25);

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
    pub manager: &'static str,
}

fn word(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "(none)").then(|| s.to_string())
}

/// `dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\t${db:Status-Status}\n'`.
pub fn parse_dpkg(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let name = word(f.first()?)?;
            let status = f.get(3).map(|s| s.trim()).unwrap_or("installed");
            if matches!(status, "not-installed" | "config-files") {
                return None;
            }
            let version = word(f.get(1)?)?;
            Some(Package {
                name,
                version,
                arch: f.get(2).and_then(|a| word(a)),
                manager: "dpkg",
            })
        })
        .collect()
}

/// The `Package:`, `Version:`, `Architecture:` and `Status:` lines of `/var/lib/dpkg/status`
/// (a record starts at `Package:`; the third word of `Status:` is the state, as in
/// `${db:Status-Status}`).
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    // One record: the fields of `parse_dpkg`'s row, as borrowed slices.
    fn row(r: [&str; 4]) -> Option<Package> {
        let name = word(r[0])?;
        let status = if r[3].is_empty() { "installed" } else { r[3] };
        if matches!(status, "not-installed" | "config-files") {
            return None;
        }
        Some(Package {
            name,
            version: word(r[1])?,
            arch: word(r[2]),
            manager: "dpkg",
        })
    }
    let mut rows = Vec::new();
    let mut cur: Option<[&str; 4]> = None;
    // lines split byte by byte: `str::lines` searched each short line's end with a general
    // searcher, a sixth of this collector's instructions for ~800 packages
    for line in text.as_bytes().split(|b| *b == b'\n') {
        // SAFETY: `text` is UTF-8 and a newline is one byte of its own in UTF-8: a line cut at
        // newlines is UTF-8 too.
        let line = unsafe { std::str::from_utf8_unchecked(line) };
        let line = line.strip_suffix('\r').unwrap_or(line);
        // the field names as prefixes (a search for the ':' of every line cost more)
        if let Some(value) = line.strip_prefix("Package:") {
            rows.extend(cur.take().and_then(row));
            cur = Some([value.trim(), "", "", ""]);
        } else if let Some(c) = cur.as_mut() {
            if let Some(value) = line.strip_prefix("Version:") {
                c[1] = value.trim();
            } else if let Some(value) = line.strip_prefix("Architecture:") {
                c[2] = value.trim();
            } else if let Some(value) = line.strip_prefix("Status:") {
                c[3] = value.split_whitespace().nth(2).unwrap_or("");
            }
        }
    }
    rows.extend(cur.and_then(row));
    rows
}

/// `rpm -qa --queryformat '%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{INSTALLTIME}\t%{ARCH}\n'`.
pub fn parse_rpm(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|line| {
            let mut f: Vec<&str> = line.split('\t').collect();
            if f.len() < 6 {
                // A copy whose tabs became blanks (no field of these holds a blank).
                f = line.split_whitespace().collect();
            }
            if f.len() != 6 {
                return None;
            }
            let name = word(f[0])?;
            let epoch = word(f[1]).filter(|e| e != "0");
            let version = word(f[2])?;
            let version = match (epoch, word(f[3])) {
                (Some(e), Some(r)) => format!("{e}:{version}-{r}"),
                (Some(e), None) => format!("{e}:{version}"),
                (None, Some(r)) => format!("{version}-{r}"),
                (None, None) => version,
            };
            Some(Package {
                name,
                version,
                arch: word(f[5]),
                manager: "rpm",
            })
        })
        .collect()
}

/// The `P:`, `V:` and `A:` lines of `/lib/apk/db/installed` (a package's record starts at `P:`).
pub fn parse_apk(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut current: Option<(String, Option<String>, Option<String>)> = None;
    let mut flush = |c: Option<(String, Option<String>, Option<String>)>| {
        if let Some((name, Some(version), arch)) = c {
            out.push(Package {
                name,
                version,
                arch,
                manager: "apk",
            });
        }
    };
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("P:") {
            flush(current.take());
            current = word(name).map(|n| (n, None, None));
        } else if let Some(v) = line.strip_prefix("V:") {
            if let Some(c) = current.as_mut() {
                c.1 = word(v);
            }
        } else if let Some(a) = line.strip_prefix("A:") {
            if let Some(c) = current.as_mut() {
                c.2 = word(a);
            }
        }
    }
    flush(current);
    out
}

/// The ids' repeats are counted by hash, eight bytes at a step (the multiply-rotate step of
/// rustc's `FxHasher`): the standard SipHash was a fifth of the counting, FNV-1a's byte at a time
/// more. The ids come from the target's own package database, not from someone choosing them to
/// collide, and a collision costs time, never a wrong count.
#[derive(Default)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(u64::from_le_bytes(w.try_into().expect("eight bytes")));
        }
        let mut last = [0u8; 8];
        let rest = words.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ rest.len() as u64);
    }
}

/// The part ids: `NAME:ARCH` (or `NAME`), and `NAME:ARCH=VERSION` for every package whose name and
/// arch occur more than once; `@MANAGER` is appended where two managers list the same package.
/// Exact duplicates (same manager, name, arch and version) are dropped.
pub fn with_ids(mut packages: Vec<Package>) -> Vec<(String, Package)> {
    packages.sort_by(|a, b| {
        (&a.name, &a.arch, &a.version, a.manager).cmp(&(&b.name, &b.arch, &b.version, b.manager))
    });
    packages.dedup();
    // Each id that occurs more than once gets `suffix` of its package (repeats counted by hash:
    // two BTreeMaps of thousands of strings were a third of the collector's time).
    fn qualify(
        ids: Vec<String>,
        packages: &[Package],
        suffix: fn(&Package) -> String,
    ) -> Vec<String> {
        let mut count: HashMap<&str, u32, BuildHasherDefault<Fx>> =
            HashMap::with_capacity_and_hasher(ids.len(), Default::default());
        for id in &ids {
            *count.entry(id.as_str()).or_default() += 1;
        }
        let twice: Vec<bool> = ids.iter().map(|id| count[id.as_str()] > 1).collect();
        ids.into_iter()
            .zip(packages)
            .zip(twice)
            .map(|((id, p), twice)| if twice { id + &suffix(p) } else { id })
            .collect()
    }
    let bases: Vec<String> = packages
        .iter()
        .map(|p| match &p.arch {
            // joined by hand: `format!` for each of ~800 packages was 2M instructions
            Some(a) => {
                let mut id = String::with_capacity(p.name.len() + 1 + a.len());
                id.push_str(&p.name);
                id.push(':');
                id.push_str(a);
                id
            }
            None => p.name.clone(),
        })
        .collect();
    let versioned = qualify(bases, &packages, |p| format!("={}", p.version));
    let ids = qualify(versioned, &packages, |p| format!("@{}", p.manager));
    ids.into_iter().zip(packages).collect()
}

/// Collects with one script.
pub fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
    let sections = batch::run(target, SCRIPT, TIMEOUT, "packages")?;
    let mut data = Data::new();
    let mut packages = Vec::new();
    let mut managers = Vec::new();
    let mut failures = Vec::new();
    type Parser = fn(&str) -> Vec<Package>;
    let parsers: [(&str, Parser); 4] = [
        ("dpkg-status", parse_dpkg_status),
        ("dpkg", parse_dpkg),
        ("rpm", parse_rpm),
        ("apk", parse_apk),
    ];
    for (manager, parse) in parsers {
        match sections.get(manager) {
            Some(Section::Content(text)) => {
                let found = parse(text);
                if found.is_empty() && !text.trim().is_empty() {
                    let first = text.lines().next().unwrap_or(text).trim();
                    failures.push(format!("{manager}: {first}"));
                } else if !found.is_empty() {
                    managers.push(manager.trim_end_matches("-status"));
                    packages.extend(found);
                }
            }
            Some(Section::Unreadable(why)) => failures.push(format!("{manager}: {why}")),
            None => {}
        }
    }
    data.fact("managers", json!(managers));
    let limit = DataLimits::default().max_parts;
    if packages.is_empty() {
        let why = if failures.is_empty() {
            "no package database: neither dpkg-query, rpm nor /lib/apk/db/installed lists a package"
                .to_string()
        } else {
            failures.join("; ")
        };
        data.unavailable("packages", why.clone())
            .reason("packages", why);
    } else if packages.len() > limit {
        let why = format!(
            "{} packages: more than the {limit} parts a list may hold",
            packages.len()
        );
        data.unavailable("packages", why.clone())
            .reason("packages", why);
    } else {
        let list = data.list("packages", &["name", "arch", "version"]);
        for (id, p) in with_ids(packages) {
            list.part(
                id,
                json!({ "name": p.name, "version": p.version, "arch": p.arch, "manager": p.manager }),
            );
        }
        if !failures.is_empty() {
            data.reason("packages", format!("partial: {}", failures.join("; ")));
        }
    }
    data.finish()
}

export_collector!(
    name = "packages",
    description = "installed packages (dpkg, rpm, apk)",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::testing::FixtureExecutor;

    use super::*;

    fn fixture(case: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(case)
    }

    fn read(case: &str, file: &str) -> String {
        std::fs::read_to_string(fixture(case).join(file)).expect("fixture")
    }

    /// The script's output around one recorded listing.
    fn script_out(section: &str, listing: &str) -> String {
        format!("==> {section}\n{listing}\n==> end\n")
    }

    fn cases() -> Vec<(&'static str, String)> {
        vec![
            (
                "ohai-dpkg",
                script_out("dpkg", &read("ohai-dpkg", "dpkg-query.output")),
            ),
            (
                "ohai-rpm",
                script_out("rpm", &read("ohai-rpm", "rpmquery.output")),
            ),
            (
                "alpine-apk",
                script_out("apk", &read("alpine-apk", "installed-PVA.txt")),
            ),
            ("debian-12-vm", read("debian-12-vm", "script.out")),
            (
                "debian-12-dpkg-query",
                read("debian-12-dpkg-query", "script.out"),
            ),
            ("no-package-manager", "==> end\n".to_string()),
        ]
    }

    fn run(out: &str) -> Value {
        FixtureExecutor::new("t")
            .command(SCRIPT, out)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects")
    }

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, out) in cases() {
            plugin_api::testing::golden(fixture(case), &run(&out));
        }
    }

    fn parts(data: &Value) -> &Vec<Value> {
        data["lists"]["packages"]["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("seen: {data}"))
    }

    #[test]
    fn ohai_dpkg_installed_only() {
        let text = read("ohai-dpkg", "dpkg-query.output");
        let all = text.lines().count();
        let data = run(&script_out("dpkg", &text));
        let parts = parts(&data);
        let skipped = text
            .lines()
            .filter(|l| l.ends_with("config-files") || l.ends_with("not-installed"))
            .count();
        assert_eq!(parts.len(), all - skipped, "{data}");
        let libc = parts
            .iter()
            .find(|p| p["id"] == "libc6:amd64")
            .expect("libc6");
        assert_eq!(libc["version"], "2.19-18+deb8u3");
        assert_eq!(libc["manager"], "dpkg");
        assert_eq!(data["facts"]["managers"], json!(["dpkg"]));
    }

    #[test]
    fn ohai_rpm_epoch_version_release() {
        let data = run(&script_out("rpm", &read("ohai-rpm", "rpmquery.output")));
        let parts = parts(&data);
        let glibc = parts.iter().find(|p| p["name"] == "glibc").expect("glibc");
        assert_eq!(glibc["id"], "glibc:x86_64");
        assert_eq!(glibc["version"], "2.17-106.el7_2.6");
        assert_eq!(
            parts.iter().find(|p| p["name"] == "tzdata").expect("tz")["arch"],
            "noarch"
        );
    }

    #[test]
    fn status_file_and_dpkg_query_agree() {
        // Both recorded on this VM within a second: the same packages either way.
        let a = run(&read("debian-12-vm", "script.out"));
        let b = run(&read("debian-12-dpkg-query", "script.out"));
        assert_eq!(a["lists"], b["lists"]);
        assert!(parts(&a).len() > 500);
    }

    #[test]
    fn install_only_packages_and_epochs() {
        // Synthetic rows in rpm's format: two kernels, a gpg-pubkey without arch, an epoch.
        let text = "kernel\t(none)\t3.10.0\t1160.el7\t1\tx86_64\n\
                    kernel\t(none)\t3.10.0\t1127.el7\t1\tx86_64\n\
                    gpg-pubkey\t(none)\tf4a80eb5\t53a7ff4b\t1\t(none)\n\
                    openssl\t1\t1.0.2k\t25.el7_9\t1\tx86_64\n";
        let ids: Vec<String> = with_ids(parse_rpm(text))
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            ids,
            [
                "gpg-pubkey",
                "kernel:x86_64=3.10.0-1127.el7",
                "kernel:x86_64=3.10.0-1160.el7",
                "openssl:x86_64"
            ]
        );
        assert_eq!(parse_rpm(text)[3].version, "1:1.0.2k-25.el7_9");
    }

    #[test]
    fn no_manager_is_unavailable_and_a_failure_says_why() {
        let data = run("==> end\n");
        assert!(data["lists"]["packages"]["unavailable"]
            .as_str()
            .is_some_and(|w| w.starts_with("no package database")));
        let data = run("==> dpkg\ndpkg-query: error: cannot open /var/lib/dpkg/status\n==> end\n");
        assert_eq!(
            data["lists"]["packages"]["unavailable"],
            "dpkg: dpkg-query: error: cannot open /var/lib/dpkg/status"
        );
    }

    #[test]
    fn more_than_the_part_limit_is_unavailable() {
        let text: String = (0..10_001)
            .map(|i| format!("p{i}\t1.0\tamd64\tinstalled\n"))
            .collect();
        let data = run(&script_out("dpkg", &text));
        assert!(data["lists"]["packages"]["unavailable"]
            .as_str()
            .is_some_and(|w| w.starts_with("10001 packages")));
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-packages -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_command(SCRIPT)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        let bytes = plugin_api::serde_json::to_string(&data)
            .expect("json")
            .len();
        println!("{} packages, {bytes} bytes of JSON", parts(&data).len());
        // Fact parity with dpkg-query where it exists: the same installed package set.
        if let Ok(out) = std::process::Command::new("dpkg-query")
            .args([
                "-W",
                "-f",
                "${Package}:${Architecture} ${Version} ${db:Status-Abbrev}\n",
            ])
            .output()
        {
            let theirs: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.ends_with("ii ") || l.ends_with("ii"))
                .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
                .collect();
            let ours: std::collections::BTreeSet<String> = parts(&data)
                .iter()
                .filter(|p| p["manager"] == "dpkg")
                .map(|p| {
                    format!(
                        "{}:{} {}",
                        p["name"].as_str().unwrap_or(""),
                        p["arch"].as_str().unwrap_or(""),
                        p["version"].as_str().unwrap_or("")
                    )
                })
                .collect();
            assert_eq!(ours, theirs);
        }
    }
}
