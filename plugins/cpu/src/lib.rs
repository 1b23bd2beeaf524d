//! The `cpu` collector: processor model and socket, core and thread counts.
//!
//! One file read on the target: `/proc/cpuinfo`. Its data (report schema 2) is four facts:
//! `model`, `socket_count`, `core_count`, `thread_count`. Counting rules:
//! - `thread_count`: the `processor` entries (the logical CPUs the kernel has online);
//! - `socket_count`: the distinct `physical id`s; 1 when the file has none (a single-socket VM,
//!   most ARM and POWER machines);
//! - `core_count`: the distinct (`physical id`, `core id`) pairs; without `core id` (ARM, POWER) every
//!   logical CPU counts as a core, since the file says nothing about SMT there;
//! - `model`: `model name` (x86), else `cpu model` (MIPS), `cpu` (POWER), `Processor` (old 32-bit
//!   ARM), else an ARM `CPU implementer`/`CPU part` pair named from a small table of server cores,
//!   or spelled out as `ARM implementer 0x41 part 0xd0c` when not in the table.
//!
//! What it is not for: frequencies, flags and caches, which change with power management or say
//! nothing to an asset database.

use std::collections::BTreeSet;

use plugin_api::{export_collector, serde_json::Value, CollectError, Data, Target};

const CPUINFO: &str = "/proc/cpuinfo";

/// What `/proc/cpuinfo` says about the processors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    pub model: Option<String>,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

/// Names of ARM server and common cores by (implementer, part), as in the Linux and lscpu tables.
fn arm_core_name(implementer: &str, part: &str) -> Option<&'static str> {
    let implementer = u32::from_str_radix(implementer.trim_start_matches("0x"), 16).ok()?;
    let part = u32::from_str_radix(part.trim_start_matches("0x"), 16).ok()?;
    Some(match (implementer, part) {
        (0x41, 0xd03) => "ARM Cortex-A53",
        (0x41, 0xd07) => "ARM Cortex-A57",
        (0x41, 0xd08) => "ARM Cortex-A72",
        (0x41, 0xd0b) => "ARM Cortex-A76",
        (0x41, 0xd0c) => "ARM Neoverse-N1",
        (0x41, 0xd40) => "ARM Neoverse-V1",
        (0x41, 0xd49) => "ARM Neoverse-N2",
        (0x41, 0xd4f) => "ARM Neoverse-V2",
        (0x43, 0x0a1) => "Cavium ThunderX 88XX",
        (0x43, 0x0af) => "Cavium ThunderX2",
        (0x48, 0xd01) => "HiSilicon Kunpeng-920",
        (0x50, 0x000) => "Applied Micro X-Gene",
        (0xc0, 0xac3) => "Ampere-1",
        _ => return None,
    })
}

/// Parses `/proc/cpuinfo` text. `None` when it lists no processor at all.
pub fn parse_cpuinfo(text: &str) -> Option<CpuInfo> {
    let mut threads = 0u32;
    let mut sockets = BTreeSet::new();
    let mut cores = BTreeSet::new();
    let mut any_core_id = false;
    let mut model: Option<String> = None;
    let mut fallback_model: Option<String> = None;
    let mut arm_implementer: Option<String> = None;
    let mut arm_part: Option<String> = None;
    // Per logical CPU, as the blocks go by.
    let mut physical_id: Option<String> = None;
    let mut core_id: Option<String> = None;

    let mut flush = |physical_id: &mut Option<String>, core_id: &mut Option<String>| {
        if let Some(core) = core_id.take() {
            let socket = physical_id.clone().unwrap_or_default();
            cores.insert((socket, core));
        }
        if let Some(socket) = physical_id.take() {
            sockets.insert(socket);
        }
    };

    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if line.trim().is_empty() {
                flush(&mut physical_id, &mut core_id);
            }
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        match key {
            // x86 and ARM64 spell it `processor`; old 32-bit ARM also has `Processor : ARMv7...`
            // as a model line, told apart by the case.
            "processor" => {
                flush(&mut physical_id, &mut core_id);
                threads += 1;
            }
            "physical id" => physical_id = Some(value.to_string()),
            "core id" => {
                any_core_id = true;
                core_id = Some(value.to_string());
            }
            "model name" if model.is_none() && !value.is_empty() => {
                model = Some(value.to_string());
            }
            "cpu model" | "cpu" | "Processor" if fallback_model.is_none() && !value.is_empty() => {
                fallback_model = Some(value.to_string());
            }
            "CPU implementer" if arm_implementer.is_none() => {
                arm_implementer = Some(value.to_string());
            }
            "CPU part" if arm_part.is_none() => arm_part = Some(value.to_string()),
            _ => {}
        }
    }
    flush(&mut physical_id, &mut core_id);

    if threads == 0 {
        return None;
    }
    let arm_model = match (&arm_implementer, &arm_part) {
        (Some(i), Some(p)) => Some(
            arm_core_name(i, p)
                .map(str::to_string)
                .unwrap_or_else(|| format!("ARM implementer {i} part {p}")),
        ),
        _ => None,
    };
    // `Intel(R) Xeon(R) CPU           X5675  @ 3.07GHz`: runs of blanks say nothing.
    let model = model
        .or(arm_model)
        .or(fallback_model)
        .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "));
    let sockets = u32::try_from(sockets.len()).unwrap_or(u32::MAX).max(1);
    let cores = if any_core_id {
        u32::try_from(cores.len()).unwrap_or(u32::MAX).max(1)
    } else {
        threads
    };
    Some(CpuInfo {
        model,
        sockets,
        cores,
        threads,
    })
}

/// Collects the processor facts of `target` with one file read.
pub fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
    let text = target.read_to_string(CPUINFO)?;
    let info = parse_cpuinfo(&text)
        .ok_or_else(|| CollectError::parse(format!("{CPUINFO} lists no processor")))?;
    let mut data = Data::new();
    data.fact("model", info.model.clone())
        .fact("socket_count", info.sockets)
        .fact("core_count", info.cores)
        .fact("thread_count", info.threads);
    if info.model.is_none() {
        data.reason("model", format!("{CPUINFO} names no processor model"));
    }
    data.build()
}

export_collector!(
    name = "cpu",
    description = "processor model and socket, core and thread counts",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::{serde_json::json, testing::FixtureExecutor};

    use super::*;

    fn run(cpuinfo: &str) -> Value {
        FixtureExecutor::new("t")
            .file(CPUINFO, cpuinfo)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects")["facts"]
            .clone()
    }

    /// The fixture cases: each directory's `cpuinfo`.
    const CASES: [&str; 4] = [
        "firecracker-vm",
        "facter-amd64twentyfour",
        "facter-arm64",
        "facter-wo-physical-id",
    ];

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for case in CASES {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(case);
            let cpuinfo = std::fs::read_to_string(dir.join("cpuinfo")).expect("fixture");
            let data = FixtureExecutor::new(case)
                .file(CPUINFO, cpuinfo)
                .with_target(|t| collect(t, &json!({})))
                .expect("collects");
            plugin_api::testing::golden(&dir, &data);
        }
    }

    #[test]
    fn this_vm_amd_epyc_two_vcpus() {
        let data = run(include_str!("../fixtures/firecracker-vm/cpuinfo"));
        assert_eq!(data["model"], "AMD EPYC");
        assert_eq!(data["socket_count"], 1);
        assert_eq!(data["core_count"], 2);
        assert_eq!(data["thread_count"], 2);
    }

    #[test]
    fn dual_socket_xeon_with_hyperthreading() {
        let data = run(include_str!("../fixtures/facter-amd64twentyfour/cpuinfo"));
        assert_eq!(data["model"], "Intel(R) Xeon(R) CPU X5675 @ 3.07GHz");
        assert_eq!(data["socket_count"], 2);
        assert_eq!(data["core_count"], 12);
        assert_eq!(data["thread_count"], 24);
    }

    #[test]
    fn arm64_without_model_name() {
        let data = run(include_str!("../fixtures/facter-arm64/cpuinfo"));
        assert_eq!(data["model"], "Cavium ThunderX 88XX");
        assert_eq!(data["socket_count"], 1);
        assert_eq!(data["core_count"], 2);
        assert_eq!(data["thread_count"], 2);
    }

    #[test]
    fn vm_without_physical_id() {
        let data = run(include_str!("../fixtures/facter-wo-physical-id/cpuinfo"));
        assert_eq!(data["model"], "Intel(R) Xeon(R) CPU E5-2697 v4 @ 2.30GHz");
        assert_eq!(data["socket_count"], 1);
        assert_eq!(data["core_count"], 4);
        assert_eq!(data["thread_count"], 4);
    }

    #[test]
    fn unknown_arm_core_is_spelled_out() {
        let info = parse_cpuinfo("processor\t: 0\nCPU implementer\t: 0x61\nCPU part\t: 0x022\n")
            .expect("one cpu");
        assert_eq!(
            info.model.as_deref(),
            Some("ARM implementer 0x61 part 0x022")
        );
    }

    #[test]
    fn missing_cpuinfo_is_an_error() {
        let err = FixtureExecutor::new("t")
            .with_target(|t| collect(t, &json!({})))
            .expect_err("no file");
        assert_eq!(err.kind, "not_found");
    }

    #[test]
    fn empty_cpuinfo_is_a_parse_error() {
        let err = FixtureExecutor::new("t")
            .file(CPUINFO, "")
            .with_target(|t| collect(t, &json!({})))
            .expect_err("nothing listed");
        assert_eq!(err.kind, "parse");
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-cpu -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_file(CPUINFO)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        let facts = &data["facts"];
        let online = std::fs::read_to_string(CPUINFO)
            .expect("cpuinfo")
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count() as u64;
        assert_eq!(facts["thread_count"].as_u64(), Some(online));
        let cores = facts["core_count"].as_u64().expect("core_count");
        let sockets = facts["socket_count"].as_u64().expect("socket_count");
        assert!(
            sockets >= 1 && cores >= sockets && cores <= online,
            "{facts}"
        );
        plugin_api::data::validate(&data, &Default::default()).expect("valid");
    }
}
