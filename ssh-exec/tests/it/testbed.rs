//! The tests' own small testbed: scripts/testbed.sh in a directory under the target dir, on a
//! network range of its own (10.252.0.0/16 unless AUTO_TESTBED_NET says otherwise), brought up
//! fresh for the test run and torn down after it.

use std::path::{Path, PathBuf};
use std::process::Command;

use ssh_exec::{HostKeyPolicy, KnownHosts, Secret, SshAuth, SshTarget};

pub const HOSTS: usize = 8;

pub struct Testbed {
    pub dir: PathBuf,
    script: PathBuf,
    targets: Vec<SshTarget>,
}

impl Testbed {
    /// Bring up a fresh testbed, or explain why it cannot be done here.
    pub fn up() -> Result<Testbed, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(
                "ssh-exec's integration tests bring up sshd hosts in network namespaces \
                        and need root (CI runs as root): run `cargo test -p ssh-exec` as root"
                    .to_string(),
            );
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed.sh");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssh-exec-testbed");
        let net = std::env::var("AUTO_TESTBED_NET").unwrap_or_else(|_| "10.252".to_string());
        let mut bed = Testbed {
            dir,
            script,
            targets: Vec::new(),
        };
        // a testbed left by a killed run: down, and start from clean files
        if bed.dir.join("testbed.env").exists() {
            bed.script(&["down"])?;
        }
        let _ = std::fs::remove_dir_all(&bed.dir);
        bed.script(&["up", &HOSTS.to_string(), "--net", &net, "--name", "atbt"])?;
        let hosts = std::fs::read_to_string(bed.dir.join("hosts.txt"))
            .map_err(|e| format!("testbed wrote no hosts.txt: {e}"))?;
        for line in hosts.lines() {
            let mut f = line.split_whitespace();
            if let (Some(h), Some(a)) = (f.next(), f.next()) {
                bed.targets.push(SshTarget::new(h, a));
            }
        }
        if bed.targets.len() != HOSTS {
            return Err(format!(
                "testbed has {} hosts, wanted {HOSTS}",
                bed.targets.len()
            ));
        }
        Ok(bed)
    }

    /// Run scripts/testbed.sh with `args` and `--dir` this testbed's directory.
    pub fn script(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "testbed.sh {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub fn down(&self) -> Result<(), String> {
        self.script(&["down"])
    }

    /// node-001 is 1.
    pub fn target(&self, n: usize) -> &SshTarget {
        &self.targets[n - 1]
    }

    pub fn key_auth(&self) -> SshAuth {
        SshAuth::key_file(&self.dir.join("id_ed25519"), None).expect("the testbed wrote a key")
    }

    pub fn known_hosts(&self) -> KnownHosts {
        KnownHosts::load(self.dir.join("known_hosts"), HostKeyPolicy::Strict)
            .expect("the testbed wrote known_hosts")
    }

    pub fn password(&self) -> Secret {
        Secret::from_file(&self.dir.join("password")).expect("the testbed wrote a password")
    }

    pub fn passphrase(&self) -> Secret {
        Secret::from_file(&self.dir.join("passphrase")).expect("the testbed wrote a passphrase")
    }

    /// A file under the testbed dir for one test's own known_hosts.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }
}
