//! ssh-exec against real sshd hosts: a small testbed (scripts/testbed.sh) is brought up for the
//! run and torn down after it, whatever the outcome.
//!
//! A harness of its own (`harness = false`, libtest-mimic): the testbed is one shared fixture with
//! a set-up and a tear-down, which libtest cannot express. It is brought up by the first test that
//! runs (so `--list`, or a filter that matches nothing, brings up nothing) and torn down after the
//! last. Tests run one after another unless `--test-threads` says otherwise; each uses its own
//! hosts. libtest's arguments work as usual: filters, `--exact`, `--skip`, `--list`,
//! `--ignored`/`--include-ignored`, `--nocapture`, `--format`.
//!
//! The tests need root (network namespaces) and sshd: unless `AUTO_CLIENT_E2E=1` (scripts/test.sh
//! sets it) each is reported as ignored, with the reason.

mod session;
mod testbed;

use std::process::ExitCode;
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use testbed::Testbed;

type Test = (&'static str, fn(&Testbed));

/// The shared testbed, once a test asked for it (or why it could not be brought up).
static BED: OnceLock<Result<Testbed, String>> = OnceLock::new();

const SKIP: &str =
    "needs root and sshd hosts in network namespaces: set AUTO_CLIENT_E2E=1 (scripts/test.sh does)";

fn e2e_enabled() -> bool {
    std::env::var("AUTO_CLIENT_E2E").as_deref() == Ok("1")
}

/// libtest's options that take a value as the next argument.
const WITH_VALUE: [&str; 6] = [
    "--test-threads",
    "--logfile",
    "--skip",
    "--color",
    "--format",
    "-Z",
];

/// The command line split into options and name filters: libtest takes any number of filters,
/// libtest-mimic one, so the filters are applied here.
fn arguments() -> (Arguments, Vec<String>) {
    let mut options = vec![std::env::args().next().unwrap_or_default()];
    let mut filters = Vec::new();
    let mut rest = std::env::args().skip(1);
    while let Some(arg) = rest.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            options.push(arg);
            options.extend(rest.next());
        } else if arg.starts_with('-') {
            options.push(arg);
        } else {
            filters.push(arg);
        }
    }
    (Arguments::from_iter(options), filters)
}

fn main() -> ExitCode {
    let (mut args, filters) = arguments();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let exact = args.exact;
    let wanted = |name: &str| {
        filters.is_empty()
            || filters.iter().any(|f| {
                if exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            })
    };
    let enabled = e2e_enabled();
    let trials = session::TESTS
        .iter()
        .filter(|(name, _)| wanted(name))
        .map(|&(name, test)| {
            Trial::ignorable_test(name, move || {
                if !enabled {
                    return Ok(Completion::ignored_with(SKIP));
                }
                let bed = BED
                    .get_or_init(Testbed::up)
                    .as_ref()
                    .map_err(|e| Failed::from(format!("cannot bring up the ssh testbed: {e}")))?;
                test(bed);
                Ok(Completion::Completed)
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(Ok(bed)) = BED.get() {
        if let Err(e) = bed.down() {
            eprintln!("error: testbed tear-down: {e}");
            return ExitCode::from(101);
        }
    }
    conclusion.exit_code()
}
