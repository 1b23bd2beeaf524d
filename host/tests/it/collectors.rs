//! The six shipped collectors, loaded by the real binary, on this machine; their facts checked
//! against an independent tool (facter) on the same machine.

use std::process::Command;

use serde_json::Value;

use crate::support::{self, collect, entry, shipped_entries, SHIPPED};

fn collect_shipped() -> Value {
    let (run, _dir) = collect(&shipped_entries());
    assert!(
        run.code == 0 || run.code == 1,
        "exit {}: {}",
        run.code,
        run.stderr
    );
    run.report()
}

#[test]
fn all_six_shipped_collectors_load_and_report_on_this_machine() {
    let report = collect_shipped();
    assert_eq!(report["schema"], 2);
    assert_eq!(report["agent"]["mode"], "agent");
    for name in SHIPPED {
        let p = &report["plugins"][name];
        assert_eq!(p["status"], "ok", "{name}: {p}");
        assert!(p["version"].is_string());
        // Every shipped collector's data follows report schema 2, as the server checks it.
        if let Err(e) = auto_proto::data::validate(&p["data"], &Default::default()) {
            panic!("{name}: {e}\n{:#}", p["data"]);
        }
    }
    let os = &report["plugins"]["os"]["data"];
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(os["identity"]["hostname"], hostname.trim());
    assert_eq!(report["hostname"], hostname.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(os["facts"]["kernel"], kernel.trim());
    assert!(report["plugins"]["cpu"]["data"]["facts"]["thread_count"]
        .as_u64()
        .is_some_and(|t| t >= 1));
    assert!(report["plugins"]["disk"]["data"]["lists"]["disks"]["parts"].is_array());
    let nics = report["plugins"]["nic"]["data"]["lists"]["interfaces"]["parts"]
        .as_array()
        .expect("interfaces");
    assert!(
        nics.iter().all(|n| n["name"] != "lo"),
        "no loopback: {nics:?}"
    );
}

fn facter() -> Value {
    let out = Command::new("facter")
        .args(["--json", "memory", "processors", "disks", "networking"])
        .output()
        .expect("facter is installed by scripts/test.sh (apt-get install facter)");
    assert!(
        out.status.success(),
        "facter failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("facter prints JSON")
}

#[test]
fn facts_agree_with_facter() {
    let ours = collect_shipped();
    let theirs = facter();
    let plugin = |n: &str| ours["plugins"][n]["data"].clone();

    // Memory: both read MemTotal; allow 1% for a kernel that moved memory in between.
    let our_mem = plugin("memory")["facts"]["total_bytes"]
        .as_u64()
        .expect("total_bytes");
    let their_mem = theirs["memory"]["system"]["total_bytes"]
        .as_u64()
        .expect("facter memory");
    let diff = our_mem.abs_diff(their_mem) as f64 / their_mem as f64;
    assert!(diff < 0.01, "memory {our_mem} vs facter {their_mem}");

    // CPU threads: exactly.
    assert_eq!(
        plugin("cpu")["facts"]["thread_count"].as_u64(),
        theirs["processors"]["count"].as_u64()
    );

    // Disk sizes: exactly, for every whole disk both list.
    let disks = plugin("disk")["lists"]["disks"]["parts"]
        .as_array()
        .cloned()
        .expect("a list of disks");
    let mut compared = 0;
    for d in &disks {
        let name = d["name"].as_str().expect("disk name");
        if let Some(f) = theirs["disks"].get(name) {
            assert_eq!(
                d["size_bytes"].as_u64(),
                f["size_bytes"].as_u64(),
                "disk {name}"
            );
            compared += 1;
        }
    }
    let facter_disks = theirs["disks"].as_object().map_or(0, |d| d.len());
    if disks.is_empty() && facter_disks == 0 {
        // Nothing to compare: say so instead of passing on 0 == 0.
        eprintln!(
            "SKIPPED disk comparison: neither facter nor the disk collector sees a disk here"
        );
    } else {
        assert!(
            compared > 0,
            "no disk compared: ours {disks:?} vs facter {}",
            theirs["disks"]
        );
        assert_eq!(
            compared,
            disks.len(),
            "facter lists every disk we list: {disks:?} vs {}",
            theirs["disks"]
        );
    }

    // NICs: the MAC and every IPv4/IPv6 address facter binds to the interface.
    let nics = plugin("nic")["lists"]["interfaces"]["parts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!nics.is_empty(), "this machine has a network interface");
    for n in &nics {
        let name = n["name"].as_str().expect("nic name");
        let f = &theirs["networking"]["interfaces"][name];
        assert!(!f.is_null(), "facter knows {name}");
        if let Some(mac) = f["mac"].as_str() {
            assert_eq!(
                n["mac"].as_str().map(str::to_lowercase),
                Some(mac.to_lowercase()),
                "{name}"
            );
        }
        let ours: Vec<String> = n["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["address"].as_str().map(String::from))
            .collect();
        for key in ["bindings", "bindings6"] {
            for b in f[key].as_array().into_iter().flatten() {
                let addr = b["address"].as_str().expect("facter address");
                assert!(
                    ours.iter().any(|a| a == addr),
                    "{name}: facter has {addr}, we have {ours:?}"
                );
            }
        }
    }
    let _ = support::workspace_root();
}

#[test]
fn a_drop_in_collector_reports_a_part_list_from_its_parts_file() {
    let root = support::workspace_root();
    let manifest = root.join("tests/fixtures/dropin-collector/Cargo.toml");
    let libs = support::build_cdylibs(
        &["--manifest-path", manifest.to_str().expect("utf-8 path")],
        Some(&root.join("target/test-fixtures/target")),
    );
    let built = libs.get("dropin-uptime").expect("drop-in built");
    let dir = tempfile::tempdir().expect("tempdir");
    let parts = dir.path().join("gpus.txt");
    std::fs::write(
        &parts,
        "GPU-1 42949672960 NVIDIA A100-SXM4-40GB\n\nGPU-2 17179869184 Tesla T4\n",
    )
    .expect("write");
    let toml = entry(
        "gpu",
        built,
        &format!(
            "options = {{ parts_file = {:?} }}",
            parts.display().to_string()
        ),
    ) + &entry("uptime", built, "");
    let (run, _dir) = collect(&toml);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let report = run.report();
    let gpu = &report["plugins"]["gpu"]["data"];
    assert_eq!(
        gpu["lists"]["gpus"],
        serde_json::json!({"key": ["id"], "parts": [
            {"id": "GPU-1", "size_bytes": 42949672960u64, "model": "NVIDIA A100-SXM4-40GB"},
            {"id": "GPU-2", "size_bytes": 17179869184u64, "model": "Tesla T4"},
        ]}),
        "{report}"
    );
    let uptime = &report["plugins"]["uptime"]["data"];
    assert!(
        uptime["volatile"]["uptime_seconds"].as_u64().is_some(),
        "{uptime}"
    );
    for load in ["load_1", "load_5", "load_15"] {
        assert!(uptime["facts"][load].is_number(), "{uptime}");
    }
    for data in [gpu, uptime] {
        auto_proto::data::validate(data, &Default::default()).expect("schema 2");
    }
}

/// `auto-client collect | head -c 1`: the reader goes away before the report is written. The
/// collection is not at fault: no panic ("failed printing to stdout: Broken pipe" before), and
/// the exit code is the collection's own.
#[test]
fn a_reader_that_goes_away_is_not_a_crash() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plugins.toml");
    std::fs::write(&path, shipped_entries()).expect("write plugins.toml");
    for format in ["json", "table"] {
        let mut child = Command::new(support::AUTO_CLIENT)
            .arg("--plugins")
            .arg(&path)
            .args(["collect", "--format", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("auto-client starts");
        // the reader is gone before anything was written
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("auto-client ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{format}: {:?} {stderr}",
            out.status
        );
    }
}
