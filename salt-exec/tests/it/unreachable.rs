use std::time::{Duration, Instant};

use salt_exec::{SaltClient, SaltError};

use crate::{salt_sh, Testbed, MINIONS};

pub fn stopped_minion_is_a_clear_error(bed: &Testbed, client: &SaltClient) {
    salt_sh(&["stop-minion", "minion-03"], &bed.dir);
    let ids: Vec<String> = MINIONS.iter().map(|m| m.to_string()).collect();
    let started = Instant::now();
    let results = client
        .run_on(&ids, "echo alive", Duration::from_secs(3))
        .expect("the job runs");
    // 3 s + grace 3 s + probe 3 s, and slack
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    for (m, r) in results {
        if m == "minion-03" {
            let err = r.unwrap_err();
            assert!(matches!(err, SaltError::MinionUnreachable { .. }), "{err}");
            assert_eq!(err.kind(), "minion_unreachable");
            let text = err.to_string();
            assert!(
                text.starts_with("minion minion-03 is unreachable"),
                "{text}"
            );
            assert!(!text.contains('\n'));
        } else {
            assert_eq!(r.expect("the others answer").stdout, b"alive\n", "{m}");
        }
    }
    let err = client
        .run("minion-03", "true", Duration::from_secs(2))
        .unwrap_err();
    assert_eq!(err.kind(), "minion_unreachable", "{err}");
    let batch = client
        .run_batch(
            &ids,
            &["echo a".to_string(), "echo b".to_string()],
            Duration::from_secs(3),
        )
        .expect("the batch runs");
    assert!(batch["minion-03"]
        .iter()
        .all(|r| r.as_ref().is_err_and(|e| e.kind() == "minion_unreachable")));
    assert!(batch["minion-01"].iter().all(|r| r.is_ok()));
}
