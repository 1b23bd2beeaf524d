use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use salt_exec::{SaltClient, SaltError};

use crate::{MINIONS, T};

/// The shell a job runs in is a child of the minion's job process, whose title carries the
/// minion's own config dir: something that differs per minion although they share one host.
const WHO_AM_I: &str = "tr '\\0' ' ' < /proc/$PPID/cmdline";

pub fn output_of_several_minions(client: &SaltClient) {
    for m in MINIONS {
        let out = client.run(m, WHO_AM_I, T).expect("the command runs");
        assert_eq!(out.exit_code, Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("/minions/{m}")),
            "{m} ran it: {text}"
        );
    }
    let ids: Vec<String> = MINIONS.iter().map(|m| m.to_string()).collect();
    let all = client
        .run_on(&ids, "cat /etc/machine-id", T)
        .expect("the job runs");
    // scripts/salt.sh gives each minion a machine-id of its own (a private mount namespace), as
    // real machines have: 32 hex digits and a newline, all different, none this machine's.
    let local = std::fs::read("/etc/machine-id").expect("this machine has a machine-id");
    assert_eq!(all.len(), 3);
    let mut seen = std::collections::BTreeSet::new();
    for (m, r) in all {
        let id = r.expect("each minion answers").stdout;
        assert_eq!(id.len(), 33, "{m}: {id:?}");
        assert!(
            id[..32].iter().all(u8::is_ascii_hexdigit) && id[32] == b'\n',
            "{m}: {id:?}"
        );
        assert_ne!(id, local, "{m} has its own machine-id");
        assert!(seen.insert(id), "{m}: machine-ids are distinct");
    }
    // output is kept exactly, trailing newlines included
    let out = client
        .run("minion-01", "printf 'a\\n\\n'", T)
        .expect("runs");
    assert_eq!(out.stdout, b"a\n\n");
    let minions = client.minions().expect("keys are listed");
    for m in MINIONS {
        assert!(minions.iter().any(|k| k == m), "{m} in {minions:?}");
    }
}

pub fn exit_codes_and_stderr(client: &SaltClient) {
    let out = client
        .run("minion-02", "echo out; echo err >&2; exit 7", T)
        .expect("a failing command is still an output");
    assert_eq!(out.exit_code, Some(7));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    let out = client
        .run("minion-02", "no-such-command-here", T)
        .expect("runs");
    assert_eq!(out.exit_code, Some(127));
}

pub fn timeout_is_an_error_naming_the_minion(client: &SaltClient) {
    let started = Instant::now();
    let err = client
        .run("minion-01", "sleep 30", Duration::from_secs(2))
        .unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert_eq!(err.minion(), Some("minion-01"));
    assert!(err.to_string().contains("sleep 30"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

pub fn unknown_minion(client: &SaltClient) {
    let err = client.run("minion-99", "true", T).unwrap_err();
    assert!(matches!(err, SaltError::UnknownMinion { .. }), "{err}");
    assert!(err.to_string().contains("minion-99"), "{err}");
}

pub fn batch_and_prefetch(client: &SaltClient) {
    let ids: Vec<String> = MINIONS.iter().map(|m| m.to_string()).collect();
    let commands = vec![
        "cat /proc/meminfo".to_string(),
        "echo to-stderr >&2; exit 4".to_string(),
        WHO_AM_I.to_string(),
    ];
    let out = client
        .run_batch(&ids, &commands, T)
        .expect("the batch runs");
    for m in MINIONS {
        let results = &out[m];
        assert_eq!(results.len(), 3);
        let meminfo = results[0].as_ref().expect("meminfo");
        assert!(String::from_utf8_lossy(&meminfo.stdout).starts_with("MemTotal:"));
        let failing = results[1].as_ref().expect("an output");
        assert_eq!(
            (failing.exit_code, failing.stderr.as_slice()),
            (Some(4), &b"to-stderr\n"[..])
        );
        let who = results[2].as_ref().expect("who");
        assert!(String::from_utf8_lossy(&who.stdout).contains(&format!("/minions/{m}")));
    }

    // prefetched: answered without a job
    client.prefetch(&ids, &commands, T).expect("prefetch");
    let jobs = client.jobs();
    let who = client
        .run("minion-02", WHO_AM_I, T)
        .expect("from the prefetch");
    assert_eq!(client.jobs(), jobs, "a prefetched run publishes no job");
    assert!(String::from_utf8_lossy(&who.stdout).contains("/minions/minion-02"));
    client.clear_prefetched();
}

pub fn concurrent_callers(client: &SaltClient) {
    // the host calls from a pool of worker threads: all in flight at once through one helper
    let client = Arc::new(client);
    thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let client = Arc::clone(&client);
                s.spawn(move || {
                    let m = MINIONS[i % 3];
                    let out = client.run(m, &format!("echo {i}"), T).expect("runs");
                    assert_eq!(out.stdout, format!("{i}\n").into_bytes());
                })
            })
            .collect();
        for h in handles {
            h.join().expect("no panic");
        }
    });
}

pub fn concurrent_runs_of_one_command_go_as_one_job(client: &SaltClient) {
    // the collectors of a fleet ask the same unpredicted command of every minion at about the
    // same time: each gets its own minion's output, and the master sees one job
    let before = client.jobs();
    let client = Arc::new(client);
    thread::scope(|s| {
        let handles: Vec<_> = MINIONS
            .iter()
            .map(|&m| {
                let client = Arc::clone(&client);
                s.spawn(move || {
                    let out = client.run(m, WHO_AM_I, T).expect("runs");
                    let text = String::from_utf8_lossy(&out.stdout);
                    assert!(text.contains(&format!("/minions/{m}")), "{m} got {text}");
                })
            })
            .collect();
        for h in handles {
            h.join().expect("no panic");
        }
    });
    assert_eq!(
        client.jobs() - before,
        1,
        "three concurrent runs of one command should be one Salt job"
    );
}

pub fn a_dead_helper_is_replaced_and_the_call_still_answers(client: &SaltClient) {
    let old = client.helper_pid();
    let killed = std::process::Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = client
        .run("minion-02", WHO_AM_I, T)
        .expect("answered by a new helper");
    assert!(String::from_utf8_lossy(&out.stdout).contains("/minions/minion-02"));
    assert_ne!(client.helper_pid(), old, "a new helper process");
}
