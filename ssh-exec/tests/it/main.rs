//! ssh-exec against real sshd hosts: a small testbed (scripts/testbed.sh) is brought up for the
//! run and torn down after it, whatever the outcome.
//!
//! A harness of its own (`harness = false`): the testbed is one shared fixture with a set-up and
//! a tear-down, which libtest cannot express. Tests run one after another; each uses its own
//! hosts, so their order does not matter. `cargo test -p ssh-exec --test it -- NAME` runs the
//! tests whose name contains NAME. Output and exit code follow libtest's.

mod session;
mod testbed;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use testbed::Testbed;

type Test = (&'static str, fn(&Testbed));

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: Vec<Test> = session::TESTS
        .iter()
        .copied()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let filtered_out = session::TESTS.len() - tests.len();
    let start = Instant::now();
    println!("\nrunning {} tests", tests.len());
    if tests.is_empty() {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in 0.00s\n");
        return ExitCode::SUCCESS;
    }
    let bed = match Testbed::up() {
        Ok(bed) => bed,
        Err(e) => {
            eprintln!("error: cannot bring up the ssh testbed: {e}");
            println!("\ntest result: FAILED. 0 passed; {} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n", tests.len(), start.elapsed().as_secs_f64());
            return ExitCode::from(101);
        }
    };
    let mut failed = Vec::new();
    for (name, test) in &tests {
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| test(&bed)));
        match outcome {
            Ok(()) => println!("test {name} ... ok ({:.2}s)", t0.elapsed().as_secs_f64()),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    if let Err(e) = bed.down() {
        eprintln!("error: testbed tear-down: {e}");
        failed.push("testbed tear-down");
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    let passed = tests.len().saturating_sub(failed.len());
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}
