//! Minions collected per second through salt-exec: the six commands auto-client's collectors run,
//! on every given minion. Used by scripts/bench-salt.sh.
//!
//! usage: bench VENV CONFIG_DIR MINION[,MINION...] [batch|per-command] [ROUNDS]
//!   batch        one job for all minions running the six commands (SaltClient::run_batch)
//!   per-command  every minion in its own thread calling SaltClient::run six times, as an
//!                executor does without prefetch (one job per command and minion)

use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use salt_exec::{SaltClient, SaltConfig};

const COMMANDS: [&str; 6] = [
    "hostname && cat /etc/os-release",
    "cat /proc/cpuinfo",
    "cat /proc/meminfo",
    "lsblk -J -b -d",
    "ip -j addr",
    "cat /etc/machine-id",
];
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: bench VENV CONFIG_DIR MINION[,MINION...] [batch|per-command] [ROUNDS]");
        return ExitCode::from(2);
    }
    let minions: Vec<String> = args[2].split(',').map(str::to_string).collect();
    let mode = args.get(3).map(String::as_str).unwrap_or("batch");
    let rounds: usize = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(3);
    let started = Instant::now();
    let client = match SaltClient::new(SaltConfig::from_venv(Path::new(&args[0]), &args[1])) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    let start_up = started.elapsed();
    let commands: Vec<String> = COMMANDS.iter().map(|c| c.to_string()).collect();
    let mut times = Vec::new();
    let mut failures = 0;
    for _ in 0..rounds {
        let t0 = Instant::now();
        match mode {
            "batch" => match client.run_batch(&minions, &commands, TIMEOUT) {
                Ok(out) => {
                    for (m, results) in &out {
                        for r in results {
                            match r {
                                Ok(o) if o.exit_code == Some(0) => {}
                                other => {
                                    failures += 1;
                                    eprintln!("bench: {m}: {other:?}");
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    eprintln!("bench: {e}");
                    return ExitCode::from(1);
                }
            },
            "per-command" => {
                failures += thread::scope(|s| {
                    let handles: Vec<_> = minions
                        .iter()
                        .map(|m| {
                            let client = &client;
                            s.spawn(move || {
                                COMMANDS
                                    .iter()
                                    .filter(|c| !matches!(client.run(m, c, TIMEOUT), Ok(o) if o.exit_code == Some(0)))
                                    .count()
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or(COMMANDS.len()))
                        .sum::<usize>()
                });
            }
            other => {
                eprintln!("bench: unknown mode {other}");
                return ExitCode::from(2);
            }
        }
        times.push(t0.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "salt-exec {mode:<11} {:>2} minions: median {:>6.2}s over {rounds} rounds = {:>6.2} minions/s (best {:.2}s; helper start {:.2}s; {failures} failed commands)",
        minions.len(),
        median.as_secs_f64(),
        minions.len() as f64 / median.as_secs_f64(),
        times[0].as_secs_f64(),
        start_up.as_secs_f64(),
    );
    if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
