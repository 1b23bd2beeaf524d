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
    let answered: Vec<&String> = results.iter().map(|(m, _)| m).collect();
    assert_eq!(
        answered.len(),
        MINIONS.len(),
        "one result per minion: {answered:?}"
    );
    for m in MINIONS {
        assert!(
            answered.iter().any(|a| *a == m),
            "no result for {m}: {answered:?}"
        );
    }
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
    assert_eq!(batch.len(), MINIONS.len(), "one entry per minion");
    for m in MINIONS {
        let results = &batch[m];
        assert_eq!(results.len(), 2, "one result per command on {m}");
        for r in results {
            if m == "minion-03" {
                assert!(
                    r.as_ref().is_err_and(|e| e.kind() == "minion_unreachable"),
                    "{m}: {r:?}"
                );
            } else {
                assert!(r.is_ok(), "{m}: {r:?}");
            }
        }
    }
}
