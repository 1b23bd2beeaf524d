//! salt-exec against a real Salt master and real minions on this machine.
//!
//! Where they come from: with `AUTO_SALT_DIR` set, a testbed already brought up by
//! `scripts/salt.sh up 3 --dir $AUTO_SALT_DIR` (left running; the minion the tests stop is started
//! again). Without it, the test brings up its own (`scripts/salt.sh up 3` in a fresh directory under
//! cargo's target tmp dir) and takes it down again, also when a check fails. Needs root, python3
//! (>= 3.10) and PyPI the first time (Salt is cached in target/salt-venv). Unless `AUTO_CLIENT_E2E=1`
//! (scripts/test.sh sets it) the test is reported as ignored, with the reason.
//!
//! One test runs the scenarios in order because they share the (slow to start) testbed and the
//! last one stops a minion. A harness of its own (`harness = false`, libtest-mimic), so that it
//! can decide at run time to be ignored; libtest's arguments work as usual.

mod files;
mod run;
mod unreachable;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use salt_exec::{SaltClient, SaltConfig};

pub const MINIONS: [&str; 3] = ["minion-01", "minion-02", "minion-03"];
pub const T: Duration = Duration::from_secs(20);

pub struct Testbed {
    pub dir: PathBuf,
    owned: bool,
    pub venv: PathBuf,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn salt_sh(args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new("bash")
        .arg(repo().join("scripts/salt.sh"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("bash runs scripts/salt.sh");
    assert!(
        out.status.success(),
        "scripts/salt.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Testbed {
    fn get() -> Testbed {
        let venv = std::env::var_os("SALT_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target/salt-venv"));
        if let Some(dir) = std::env::var_os("AUTO_SALT_DIR") {
            return Testbed {
                dir: PathBuf::from(dir),
                owned: false,
                venv,
            };
        }
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("salt-it-{}", std::process::id()));
        let bed = Testbed {
            dir,
            owned: true,
            venv,
        };
        salt_sh(&["up", "3"], &bed.dir);
        bed
    }

    pub fn client(&self) -> SaltClient {
        let mut config = SaltConfig::from_venv(&self.venv, self.dir.join("master"));
        config.default_timeout = T;
        SaltClient::new(config).expect("the helper starts and reaches the master")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new("bash")
                .arg(repo().join("scripts/salt.sh"))
                .args(["down", "--dir"])
                .arg(&self.dir)
                .status();
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            // leave the given testbed as it was found
            let _ = Command::new("bash")
                .arg(repo().join("scripts/salt.sh"))
                .args(["start-minion", "minion-03", "--dir"])
                .arg(&self.dir)
                .status();
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let enabled = std::env::var("AUTO_CLIENT_E2E").as_deref() == Ok("1");
    let trial = libtest_mimic::Trial::ignorable_test("salt_master_and_minions", move || {
        if !enabled {
            return Ok(libtest_mimic::Completion::ignored_with(
                "needs root, python3 and a Salt master with minions: set AUTO_CLIENT_E2E=1 \
                 (scripts/test.sh does)",
            ));
        }
        salt_master_and_minions();
        Ok(libtest_mimic::Completion::Completed)
    });
    libtest_mimic::run(&args, vec![trial]).exit_code()
}

fn salt_master_and_minions() {
    let bed = Testbed::get();
    let client = bed.client();
    run::output_of_several_minions(&client);
    run::exit_codes_and_stderr(&client);
    run::timeout_is_an_error_naming_the_minion(&client);
    run::unknown_minion(&client);
    run::batch_and_prefetch(&client);
    run::concurrent_callers(&client);
    run::concurrent_runs_of_one_command_go_as_one_job(&client);
    run::a_dead_helper_is_replaced_and_the_call_still_answers(&client);
    files::read_file(&client);
    files::missing_file(&client);
    unreachable::stopped_minion_is_a_clear_error(&bed, &client);
}
