//! `auto-client deploy`: rolls the agent out over SSH to ssh mode's targets (same `--hosts` /
//! `--hosts-file`, host keys, auth and `--workers`), and leaves each host reporting by itself.
//!
//! Per host, on one SSH connection:
//! 1. one `sh` request reports the SHA-256, mode and owner of every file this deploy manages, the
//!    state of its directories and whether systemd runs there (and the timer is enabled);
//! 2. what differs is uploaded over SFTP (`ssh_exec::Sftp`) to a temporary name in the target's
//!    directory, created with its final mode (the key: 0600, never readable by others on the way);
//! 3. one `sh` request gives each file root:root and its mode and renames it over the target
//!    (atomic: a running agent never loads a half-written `.so`); files whose content is right
//!    but whose mode or owner is not are fixed in place;
//! 4. where systemd runs, `auto-client.timer` is enabled (`daemon-reload`, `enable --now`);
//! 5. the agent runs once (`auto-client --config ... run`).
//!
//! A host where nothing differs is left alone and counted as unchanged; `--dry-run` stops after
//! step 1 and prints what would change. The layout is the package's (`packaging/`):
//! `/usr/bin/auto-client`, `/usr/lib/auto-client/*.so` (root-owned 0644 in 0755 directories: the
//! agent's StrictModes check passes), `/etc/auto-client/{auto-client.toml,plugins.toml,key}`,
//! `/etc/auto-client/plugins.d/`, `/var/lib/auto-client/`, and the units under
//! `/etc/systemd/system/`. `--root DIR` puts all of it under DIR (`{host}` is replaced by the
//! target's name: for testbeds whose hosts share one filesystem).
//!
//! Keys: `--keys-dir DIR` holds one key file per host, named after the host (`DIR/web-1`, made by
//! `auto-server keys create web-1-agent --scope host --host web-1`); the key's name in the deployed
//! config is `--key-id-format` with `{host}` replaced (default `{host}-agent`). Or one key for
//! every host: `--key-id` and `--key-file` (a fleet key: a leaked one speaks for every host).

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use sha2::{Digest, Sha256};
use ssh_exec::{SshSession, SshTarget};

use crate::{
    config::{ApiFlags, CollectArgs, ConfigFile, Format, RemoteArgs},
    pool::Pool,
    remote::{self, ssh::SshSetup, HostFailure, HostSummary, RemoteTarget},
    settings::{self, Where},
    Mode, Outcome,
};

const SERVICE_TEMPLATE: &str = include_str!("../../packaging/auto-client/auto-client.service");
const TIMER_TEMPLATE: &str = include_str!("../../packaging/auto-client/auto-client.timer");

/// `auto-client deploy`.
#[derive(Debug, ClapArgs)]
pub struct DeployArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The API the deployed agents report to (`--api`; default: this config's `api`); with
    /// `--key-id` and `--key-file`: one key for every host.
    #[command(flatten)]
    pub api: ApiFlags,
    /// A directory of key files named after the hosts (DIR/HOST), one per host.
    #[arg(long, env = "AUTO_CLIENT_DEPLOY_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
    /// The key's name in each host's config; {host} is the target's name.
    #[arg(
        long,
        default_value = "{host}-agent",
        env = "AUTO_CLIENT_DEPLOY_KEY_ID_FORMAT"
    )]
    pub key_id_format: String,
    /// The agent binary to install (default: this one).
    #[arg(long, env = "AUTO_CLIENT_DEPLOY_BINARY")]
    pub binary: Option<PathBuf>,
    /// Install under this directory instead of / ({host} is the target's name).
    #[arg(long, default_value = "/", env = "AUTO_CLIENT_DEPLOY_ROOT")]
    pub root: String,
    /// The deployed config's `textfile` (a node_exporter textfile the agent writes).
    #[arg(long)]
    pub textfile: Option<PathBuf>,
    /// Show what would change on each host; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not run the agent once after installing.
    #[arg(long)]
    pub no_run: bool,
}

/// One file this deploy manages on a host.
#[derive(Debug, Clone)]
struct Item {
    path: String,
    bytes: Arc<Vec<u8>>,
    sha256: String,
    mode: u32,
}

impl Item {
    fn new(path: String, bytes: Vec<u8>, mode: u32) -> Self {
        let sha256 = hex_digest(&bytes);
        Self {
            path,
            bytes: Arc::new(bytes),
            sha256,
            mode,
        }
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Everything that is the same for every host.
struct Plan {
    api: String,
    root: String,
    /// The agent binary and its SHA-256 (hashed once: the same for every host).
    binary: (Arc<Vec<u8>>, String),
    libs: Vec<Lib>,
    /// plugins.toml with the collectors' paths under `{root}/usr/lib/auto-client` (`@ROOT@`).
    plugins_toml: String,
    keys: Keys,
    textfile: Option<PathBuf>,
    dry_run: bool,
    run_agent: bool,
    sudo: &'static str,
}

/// A collector: its file name, bytes and SHA-256.
type Lib = (String, Arc<Vec<u8>>, String);

enum Keys {
    PerHost { dir: PathBuf, id_format: String },
    Shared { id: String, secret: Vec<u8> },
}

/// The install root for one host: `/` or the given directory, `{host}` filled in, no trailing /.
fn root_for(root: &str, host: &str) -> String {
    let r = root.replace("{host}", host);
    r.trim_end_matches('/').to_string()
}

impl Plan {
    fn items(&self, host: &str) -> Result<(Vec<Item>, String), HostFailure> {
        let root = root_for(&self.root, host);
        let (key_id, secret) = match &self.keys {
            Keys::Shared { id, secret } => (id.clone(), secret.clone()),
            Keys::PerHost { dir, id_format } => {
                let path = dir.join(host);
                let secret = std::fs::read(&path).map_err(|e| HostFailure {
                    kind: "no_key".into(),
                    message: format!("no key file {} for this host: {e}", path.display()),
                })?;
                (id_format.replace("{host}", host), secret)
            }
        };
        let mut items = vec![Item {
            path: format!("{root}/usr/bin/auto-client"),
            bytes: Arc::clone(&self.binary.0),
            sha256: self.binary.1.clone(),
            mode: 0o755,
        }];
        for (name, bytes, sha256) in &self.libs {
            items.push(Item {
                path: format!("{root}/usr/lib/auto-client/{name}"),
                bytes: Arc::clone(bytes),
                sha256: sha256.clone(),
                mode: 0o644,
            });
        }
        items.push(Item::new(
            format!("{root}/etc/auto-client/plugins.toml"),
            self.plugins_toml.replace("@ROOT@", &root).into_bytes(),
            0o644,
        ));
        items.push(Item::new(
            format!("{root}/etc/auto-client/auto-client.toml"),
            self.config(&root, &key_id).into_bytes(),
            0o644,
        ));
        items.push(Item::new(
            format!("{root}/etc/auto-client/key"),
            secret,
            0o600,
        ));
        let exec = format!(
            "ExecStart={root}/usr/bin/auto-client --config {root}/etc/auto-client/auto-client.toml run"
        );
        let service: String = SERVICE_TEMPLATE
            .lines()
            .map(|l| {
                if l.starts_with("ExecStart=") {
                    format!("{exec}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        items.push(Item::new(
            format!("{root}/etc/systemd/system/auto-client.service"),
            service.into_bytes(),
            0o644,
        ));
        items.push(Item::new(
            format!("{root}/etc/systemd/system/auto-client.timer"),
            TIMER_TEMPLATE.as_bytes().to_vec(),
            0o644,
        ));
        Ok((items, root))
    }

    fn config(&self, root: &str, key_id: &str) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut text = format!(
            "# Written by `auto-client deploy`: a later deploy replaces it.\n\
             plugins = {}\nmode = \"agent\"\napi = {}\nkey_id = {}\nkey_file = {}\n\
             cert_file = {}\nspool_dir = {}\nstrict_permissions = true\n",
            q(&format!("{root}/etc/auto-client/plugins.toml")),
            q(&self.api),
            q(key_id),
            q(&format!("{root}/etc/auto-client/key")),
            q(&format!("{root}/var/lib/auto-client/cert")),
            q(&format!("{root}/var/lib/auto-client/spool")),
        );
        if let Some(t) = &self.textfile {
            text.push_str(&format!("textfile = {}\n", q(&t.to_string_lossy())));
        }
        text
    }
}

/// What one host looked like before.
#[derive(Debug, Default)]
struct Seen {
    /// path -> (sha256, mode, uid, gid), for the files that exist.
    files: BTreeMap<String, (String, u32, u32, u32)>,
    /// path -> (mode, uid, gid), for the directories that exist.
    dirs: BTreeMap<String, (u32, u32, u32)>,
    /// None: no systemd; Some(enabled?)
    systemd: Option<bool>,
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn check_script(items: &[Item], dirs: &[String]) -> String {
    let files: Vec<String> = items.iter().map(|i| shell_quote(&i.path)).collect();
    let dirs: Vec<String> = dirs.iter().map(|d| shell_quote(d)).collect();
    format!(
        "for f in {}; do if [ -f \"$f\" ]; then s=$(stat -c '%a %u %g' -- \"$f\") && h=$(sha256sum -- \"$f\") && \
         printf 'F %s %s %s\\n' \"${{h%% *}}\" \"$s\" \"$f\"; fi; done; \
         for d in {}; do if [ -d \"$d\" ]; then printf 'D %s %s\\n' \"$(stat -c '%a %u %g' -- \"$d\")\" \"$d\"; fi; done; \
         if [ -d /run/systemd/system ]; then if systemctl is-enabled --quiet auto-client.timer 2>/dev/null; \
         then echo 'S enabled'; else echo 'S disabled'; fi; else echo 'S none'; fi",
        files.join(" "),
        dirs.join(" ")
    )
}

fn parse_seen(text: &str) -> Seen {
    let mut seen = Seen::default();
    let oct = |s: &str| u32::from_str_radix(s, 8).unwrap_or(u32::MAX);
    let num = |s: &str| s.parse::<u32>().unwrap_or(u32::MAX);
    for line in text.lines() {
        let w: Vec<&str> = line.splitn(6, ' ').collect();
        match w.as_slice() {
            ["F", sha, mode, uid, gid, path] => {
                seen.files.insert(
                    path.to_string(),
                    (sha.to_string(), oct(mode), num(uid), num(gid)),
                );
            }
            ["D", mode, uid, gid, rest @ ..] => {
                seen.dirs
                    .insert(rest.join(" "), (oct(mode), num(uid), num(gid)));
            }
            ["S", "none"] => seen.systemd = None,
            ["S", state] => seen.systemd = Some(*state == "enabled"),
            _ => {}
        }
    }
    seen
}

/// What deploy did (or would do) on one host.
#[derive(Debug, Default)]
struct Done {
    changes: Vec<String>,
    /// the agent's exit code, when it ran
    ran: Option<i32>,
}

fn fail(kind: &str, message: impl Into<String>) -> HostFailure {
    HostFailure {
        kind: kind.to_string(),
        message: message.into(),
    }
}

/// Runs `script` on the host; its stdout, or a failure naming `what`.
fn run_script(
    session: &SshSession,
    script: &str,
    timeout: Duration,
    what: &str,
) -> Result<String, HostFailure> {
    let out = session
        .run(script, timeout)
        .map_err(|e| fail(e.kind(), e.to_string()))?;
    if out.exit_code != Some(0) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(
            "install_failed",
            format!(
                "{what} failed (exit {:?}): {}",
                out.exit_code,
                stderr.lines().last().unwrap_or("").trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn deploy_host(
    plan: &Plan,
    session: &SshSession,
    (items, root): (Vec<Item>, String),
) -> Result<Done, HostFailure> {
    let own_dirs: Vec<String> = [
        "/usr/lib/auto-client",
        "/etc/auto-client",
        "/etc/auto-client/plugins.d",
        "/var/lib/auto-client",
    ]
    .iter()
    .map(|d| format!("{root}{d}"))
    .collect();
    let parent_dirs: Vec<String> = ["/usr/bin", "/etc/systemd/system"]
        .iter()
        .map(|d| format!("{root}{d}"))
        .collect();
    let all_dirs: Vec<String> = own_dirs.iter().chain(&parent_dirs).cloned().collect();
    let seen = parse_seen(&run_script(
        session,
        &check_script(&items, &all_dirs),
        Duration::from_secs(60),
        "the check",
    )?);

    let mut done = Done::default();
    let mut dir_script = Vec::new();
    for d in &parent_dirs {
        if !seen.dirs.contains_key(d) {
            done.changes.push(format!("create {d}"));
            dir_script.push(format!("mkdir -p -- {}", shell_quote(d)));
        }
    }
    for d in &own_dirs {
        if seen.dirs.get(d) != Some(&(0o755, 0, 0)) {
            done.changes.push(format!(
                "{} {d} (root, 0755)",
                if seen.dirs.contains_key(d) {
                    "fix"
                } else {
                    "create"
                }
            ));
            let d = shell_quote(d);
            dir_script.push(format!(
                "mkdir -p -- {d} && chown 0:0 -- {d} && chmod 0755 -- {d}"
            ));
        }
    }
    let mut upload = Vec::new();
    let mut install_script = Vec::new();
    let mut units_changed = false;
    for item in &items {
        let p = shell_quote(&item.path);
        match seen.files.get(&item.path) {
            Some((sha, mode, uid, gid)) if *sha == item.sha256 => {
                if (*mode, *uid, *gid) != (item.mode, 0, 0) {
                    done.changes
                        .push(format!("fix {} (root, {:04o})", item.path, item.mode));
                    install_script.push(format!(
                        "chown 0:0 -- {p} && chmod {:04o} -- {p}",
                        item.mode
                    ));
                }
            }
            old => {
                done.changes.push(format!(
                    "{} {}",
                    if old.is_some() { "update" } else { "install" },
                    item.path
                ));
                let (dir, name) = item.path.rsplit_once('/').unwrap_or(("", &item.path));
                let tmp = format!("{dir}/.{name}.deploy-tmp");
                let t = shell_quote(&tmp);
                install_script.push(format!(
                    "chown 0:0 -- {t} && chmod {:04o} -- {t} && mv -f -- {t} {p}",
                    item.mode
                ));
                if item.path.contains("/systemd/system/") {
                    units_changed = true;
                }
                upload.push((tmp, item));
            }
        }
    }
    let enable_timer = root.is_empty() && seen.systemd.is_some_and(|on| !on || units_changed);
    if enable_timer {
        done.changes.push("enable auto-client.timer".to_string());
    }
    if plan.dry_run || done.changes.is_empty() {
        return Ok(done);
    }

    let sudo = plan.sudo;
    if !dir_script.is_empty() {
        run_script(
            session,
            &format!("{sudo}sh -c {}", shell_quote(&dir_script.join(" && "))),
            Duration::from_secs(60),
            "creating the directories",
        )?;
    }
    if !upload.is_empty() {
        session
            .sftp(Duration::from_secs(120), |sftp| {
                for (tmp, item) in &upload {
                    sftp.write(Path::new(tmp), &item.bytes, item.mode)?;
                }
                Ok(())
            })
            .map_err(|e| fail(e.kind(), e.to_string()))?;
    }
    if !install_script.is_empty() {
        run_script(
            session,
            &format!("{sudo}sh -c {}", shell_quote(&install_script.join(" && "))),
            Duration::from_secs(60),
            "installing the files",
        )?;
    }
    if enable_timer {
        run_script(
            session,
            &format!(
                "{sudo}systemctl daemon-reload && {sudo}systemctl enable --now auto-client.timer"
            ),
            Duration::from_secs(60),
            "enabling auto-client.timer",
        )?;
    }
    if plan.run_agent {
        let cmd = format!(
            "{sudo}{root}/usr/bin/auto-client --config {root}/etc/auto-client/auto-client.toml run"
        );
        let out = session
            .run(&cmd, Duration::from_secs(300))
            .map_err(|e| fail(e.kind(), e.to_string()))?;
        match out.exit_code {
            Some(0 | 1) => done.ran = out.exit_code,
            other => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                return Err(fail(
                    "agent_failed",
                    format!(
                        "installed, but the agent's first run failed (exit {other:?}): {}",
                        stderr.lines().last().unwrap_or("").trim()
                    ),
                ));
            }
        }
    }
    Ok(done)
}

/// plugins.toml for the hosts: each configured collector's file under `@ROOT@/usr/lib/auto-client`,
/// drop-ins from `@ROOT@/etc/auto-client/plugins.d`; and the collectors' bytes.
fn remote_plugins(path: &Path) -> Result<(String, Vec<Lib>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plugins file {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("plugins file {}", path.display()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut libs = Vec::new();
    if let Some(plugins) = table.get_mut("plugins").and_then(|p| p.as_table_mut()) {
        for (name, spec) in plugins.iter_mut() {
            let Some(spec) = spec.as_table_mut() else {
                continue;
            };
            let Some(local) = spec.get("path").and_then(|p| p.as_str()) else {
                continue;
            };
            let local = base.join(local);
            let file = local
                .file_name()
                .and_then(|f| f.to_str())
                .with_context(|| format!("plugin {name}: path {} names no file", local.display()))?
                .to_string();
            let bytes = std::fs::read(&local)
                .with_context(|| format!("plugin {name}: cannot read {}", local.display()))?;
            spec.insert(
                "path".into(),
                toml::Value::String(format!("@ROOT@/usr/lib/auto-client/{file}")),
            );
            let sha256 = hex_digest(&bytes);
            libs.push((file, Arc::new(bytes), sha256));
        }
    }
    table.insert(
        "dirs".into(),
        toml::Value::Array(vec![toml::Value::String(
            "@ROOT@/etc/auto-client/plugins.d".into(),
        )]),
    );
    let text = format!(
        "# Written by `auto-client deploy`: a later deploy replaces it.\n{}",
        toml::to_string(&table)?
    );
    Ok((text, libs))
}

pub fn run(plugins: Option<PathBuf>, args: &DeployArgs, file: &ConfigFile) -> Result<Outcome> {
    // ssh mode's targets and settings, resolved as `collect --mode ssh` resolves them
    let collect = settings::Collect::resolve(
        plugins,
        &CollectArgs {
            mode: Some(Mode::Ssh),
            remote: args.remote.clone(),
            format: Format::Json,
            isolation: None,
        },
        file,
    )?;
    let Where::Fleet(fleet) = collect.at else {
        bail!("deploy works over ssh");
    };
    let api = args.api.api.clone().or_else(|| file.api.clone()).context(
        "deploy needs the API the agents report to: give --api (or `api` in the config)",
    )?;
    let keys = match (&args.keys_dir, &args.api.key_id, &args.api.key_file) {
        (Some(dir), None, None) => {
            if !dir.is_dir() {
                bail!("--keys-dir {} is not a directory", dir.display());
            }
            Keys::PerHost {
                dir: dir.clone(),
                id_format: args.key_id_format.clone(),
            }
        }
        (None, Some(id), Some(path)) => {
            tracing::warn!("one key for every host: a per-host key (--keys-dir) limits what a leaked one can do");
            Keys::Shared {
                id: id.clone(),
                secret: std::fs::read(path)
                    .with_context(|| format!("cannot read key file {}", path.display()))?,
            }
        }
        _ => bail!("deploy needs keys: --keys-dir DIR (one file per host, named after it), or --key-id and --key-file (one for every host)"),
    };
    let binary = match &args.binary {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find this program's file")?,
    };
    let binary =
        std::fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let binary_sha256 = hex_digest(&binary);
    let binary = (Arc::new(binary), binary_sha256);
    let (plugins_toml, libs) = remote_plugins(&collect.common.plugins_path)?;
    let ssh = Arc::new(SshSetup::new(&fleet.ssh)?);
    let plan = Arc::new(Plan {
        api,
        root: args.root.clone(),
        binary,
        libs,
        plugins_toml,
        keys,
        textfile: args.textfile.clone(),
        dry_run: args.dry_run,
        run_agent: !args.no_run,
        sudo: if ssh.user == "root" { "" } else { "sudo -n " },
    });

    let targets = fleet.listed.clone();
    let total = targets.len();
    let started = Instant::now();
    let pool = Pool::new("deploy", fleet.workers);
    let results = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let progress = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let tty = std::io::stderr().is_terminal();
    for target in targets {
        let (plan, ssh, results, progress) = (
            Arc::clone(&plan),
            Arc::clone(&ssh),
            Arc::clone(&results),
            Arc::clone(&progress),
        );
        pool.execute(move || {
            let host_started = Instant::now();
            let outcome = deploy_one(&plan, &ssh, &target);
            let took = host_started.elapsed();
            let done = progress.0.fetch_add(1, Ordering::Relaxed) + 1;
            let failed = match &outcome {
                Err(_) => progress.1.fetch_add(1, Ordering::Relaxed) + 1,
                Ok(_) => progress.1.load(Ordering::Relaxed),
            };
            if tty {
                let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprint!("\r\x1b[2K{done}/{total} hosts, {failed} failed, {rate:.1} hosts/s");
            } else {
                match &outcome {
                    Ok(d) if d.changes.is_empty() => {
                        tracing::info!(host = %target.name, took_ms = took.as_millis() as u64, outcome = "unchanged", "nothing to change")
                    }
                    Ok(d) => tracing::info!(host = %target.name, took_ms = took.as_millis() as u64,
                        outcome = if plan.dry_run { "would_change" } else { "changed" },
                        changes = d.changes.len(), agent_exit = ?d.ran, "{}", d.changes.join(", ")),
                    Err(f) => tracing::warn!(host = %target.name, took_ms = took.as_millis() as u64, outcome = %f.kind, error = %f.message, "host failed"),
                }
            }
            results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((target.name, outcome, took));
        });
    }
    pool.join();
    if tty && total > 0 {
        eprintln!();
    }
    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let summaries: Vec<HostSummary> = results
        .iter()
        .map(|(name, outcome, took)| HostSummary {
            name: name.clone(),
            outcome: outcome.as_ref().map(|_| 0).map_err(Clone::clone),
            took: *took,
        })
        .collect();
    eprintln!("{}", remote::summary(&summaries, started.elapsed()));
    if plan.dry_run && tty {
        for (name, outcome, _) in &results {
            if let Ok(d) = outcome {
                for c in &d.changes {
                    eprintln!("  {name}: would {c}");
                }
            }
        }
    }
    println!("{}", deploy_summary(&results, plan.dry_run));
    Ok(if summaries.iter().all(HostSummary::all_ok) {
        Outcome::AllWell
    } else {
        Outcome::PartialFailure
    })
}

type HostOutcome = (String, Result<Done, HostFailure>, Duration);

/// The closing line: how many hosts changed (or would), how many changes, how many were left as
/// they were.
fn deploy_summary(results: &[HostOutcome], dry_run: bool) -> String {
    let ok: Vec<&Done> = results.iter().filter_map(|r| r.1.as_ref().ok()).collect();
    let changed = ok.iter().filter(|d| !d.changes.is_empty()).count();
    let changes: usize = ok.iter().map(|d| d.changes.len()).sum();
    let unchanged = ok.len() - changed;
    let failed = results.len() - ok.len();
    let failed = if failed > 0 {
        format!(", {failed} failed")
    } else {
        String::new()
    };
    if changed == 0 {
        return format!("deploy: nothing changed: {unchanged} hosts already up to date{failed}");
    }
    if dry_run {
        format!("deploy --dry-run: {changed} hosts would change ({changes} changes), {unchanged} up to date{failed}; nothing was written")
    } else {
        format!(
            "deploy: {changed} hosts changed ({changes} changes), {unchanged} up to date{failed}"
        )
    }
}

fn deploy_one(plan: &Plan, ssh: &SshSetup, target: &RemoteTarget) -> Result<Done, HostFailure> {
    // the key file first: a host without one is not even connected to
    let items = plan.items(&target.name)?;
    let ssh_target = SshTarget {
        host: target.name.clone(),
        address: target.address.clone(),
        port: target.port.unwrap_or(ssh.port),
        user: ssh.user.clone(),
    };
    let session = SshSession::connect(&ssh_target, &ssh.auth, &ssh.known_hosts, &ssh.options)
        .map_err(|e| fail(e.kind(), e.to_string()))?;
    deploy_host(plan, &session, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_output_is_parsed() {
        let seen = parse_seen(
            "F abc 755 0 0 /usr/bin/auto-client\nF def 600 0 0 /etc/auto-client/key\n\
             D 755 0 0 /usr/lib/auto-client\nD 775 1000 0 /etc/auto-client\nS disabled\n",
        );
        assert_eq!(
            seen.files.get("/usr/bin/auto-client"),
            Some(&("abc".to_string(), 0o755, 0, 0))
        );
        assert_eq!(seen.files["/etc/auto-client/key"].1, 0o600);
        assert_eq!(seen.dirs["/etc/auto-client"], (0o775, 1000, 0));
        assert_eq!(seen.systemd, Some(false));
        assert_eq!(parse_seen("S none\n").systemd, None);
    }

    #[test]
    fn the_root_takes_the_host_name_and_loses_its_trailing_slash() {
        assert_eq!(root_for("/", "web-1"), "");
        assert_eq!(root_for("/tmp/tb/{host}/", "web-1"), "/tmp/tb/web-1");
    }

    #[test]
    fn the_deployed_plugins_toml_points_at_the_installed_collectors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("liba.so"), b"\x7fELF").expect("write");
        std::fs::write(
            dir.path().join("plugins.toml"),
            "dirs = [\"plugins.d\"]\n[plugins.a]\npath = \"liba.so\"\ntimeout = \"3s\"\n",
        )
        .expect("write");
        let (text, libs) = remote_plugins(&dir.path().join("plugins.toml")).expect("rewritten");
        let t: toml::Table = toml::from_str(&text.replace("@ROOT@", "/r")).expect("toml");
        assert_eq!(
            t["plugins"]["a"]["path"].as_str(),
            Some("/r/usr/lib/auto-client/liba.so")
        );
        assert_eq!(t["plugins"]["a"]["timeout"].as_str(), Some("3s"));
        assert_eq!(t["dirs"][0].as_str(), Some("/r/etc/auto-client/plugins.d"));
        assert_eq!(libs[0].0, "liba.so");
    }

    #[test]
    fn the_summary_says_when_nothing_changed() {
        let r = vec![
            ("a".to_string(), Ok(Done::default()), Duration::ZERO),
            ("b".to_string(), Ok(Done::default()), Duration::ZERO),
        ];
        assert_eq!(
            deploy_summary(&r, false),
            "deploy: nothing changed: 2 hosts already up to date"
        );
        let r = vec![(
            "a".to_string(),
            Ok(Done {
                changes: vec!["install /usr/bin/auto-client".into()],
                ran: Some(0),
            }),
            Duration::ZERO,
        )];
        assert_eq!(
            deploy_summary(&r, false),
            "deploy: 1 hosts changed (1 changes), 0 up to date"
        );
        assert!(deploy_summary(&r, true).contains("nothing was written"));
    }
}
