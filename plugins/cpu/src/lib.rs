//! The `cpu` collector: processor model and socket, core and thread counts.
//!
//! A read of `/proc/cpuinfo` and one `sh` command on the target, asked together (the dry run of
//! ssh and salt mode learns both: one round trip; in agent mode the file read costs no process):
//! the command prints the kernel's topology under `/sys/devices/system/cpu` (`online`, and each
//! CPU's `topology/core_siblings_list` and `topology/thread_siblings_list`) as `PATH:VALUE` lines
//! with shell builtins only (no process but the `sh`, whatever the number of CPUs); where the
//! kernel exports no topology at all (old kernels, a sysfs hidden from a container) it then runs
//! `dmidecode -t 4` (SMBIOS processors; `sudo -n` with the option `{ "sudo": true }`, as memory
//! and board do; not started where no SMBIOS entry point exists). Its data (report schema 2) is four facts:
//! `model`, `socket_count`, `core_count`, `thread_count`. Each comes from the first source that
//! can tell, so that no architecture fails the whole collector:
//! - `thread_count`: the CPUs in sysfs `online`, else the `processor` entries of cpuinfo (x86,
//!   arm64, POWER), else s390's `# processors` line;
//! - `core_count`: the distinct `thread_siblings_list` of the online CPUs (POWER with SMT, arm64
//!   and s390x alike), else the distinct (`physical id`, `core id`) pairs of cpuinfo, else one
//!   core per logical CPU (the file says nothing about SMT there);
//! - `socket_count`: the distinct `core_siblings_list` of the online CPUs (the kernel's package
//!   siblings, as lscpu counts sockets), else the distinct `physical id`s of cpuinfo, else the
//!   populated type-4 entries of dmidecode (VMs and old kernels), else `null` with a reason.
//!   On arm64 kernels that describe clusters rather than packages (device-tree systems before
//!   ACPI PPTT) the kernel's package is a cluster: counted as lscpu counts it;
//! - `model`: `model name` (x86), else an ARM `CPU implementer`/`CPU part` pair named from a
//!   small table of server cores (or spelled out as `ARM implementer 0x41 part 0xd0c`), else
//!   `cpu model` (MIPS), `cpu` (POWER), `Processor` (old 32-bit ARM), else s390's
//!   `IBM/S390 machine 2817`; else the `Version` of dmidecode's type 4 where it ran.
//!
//! What it is not for: frequencies, flags and caches, which change with power management or say
//! nothing to an asset database.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use plugin_api::{batch, export_collector, serde_json::Value, CollectError, Data, Target};

/// dmidecode's records, shared with the board and memory collectors.
#[path = "../../board/src/dmidecode.rs"]
#[allow(dead_code)]
mod dmidecode;

const CPUINFO: &str = "/proc/cpuinfo";
const SYS_CPU: &str = "/sys/devices/system/cpu";
/// Below the host's default collector timeout (10 s), so that the executor kills a hung command
/// and this collector reports it before the host gives up on the whole collector.
const TIMEOUT: Duration = Duration::from_secs(8);

/// The one command this collector runs (see the crate docs); `sudo` runs dmidecode with
/// `sudo -n`.
pub fn script(sudo: bool) -> String {
    format!(
        "for f in {SYS_CPU}/online {SYS_CPU}/cpu[0-9]*/topology/core_siblings_list \
         {SYS_CPU}/cpu[0-9]*/topology/thread_siblings_list; do \
         [ -r \"$f\" ] && read -r v < \"$f\" && printf '%s:%s\\n' \"$f\" \"$v\"; done; \
         s=; for f in {SYS_CPU}/cpu[0-9]*/topology/core_siblings_list; do [ -r \"$f\" ] && s=1; break; done; \
         [ -n \"$s\" ] || {{ {step}; }}",
        step = dmidecode::batch_step("dmidecode", &dmidecode::command("4", sudo)),
    )
}

/// What the kernel's topology says: the online CPUs, and per CPU its package and core
/// siblings (as the kernel prints the lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub online: Option<BTreeSet<u32>>,
    pub package_siblings: BTreeMap<u32, String>,
    pub thread_siblings: BTreeMap<u32, String>,
}

impl Topology {
    /// The CPUs counted: the online ones, else those with a topology.
    fn cpus(&self) -> BTreeSet<u32> {
        self.online.clone().unwrap_or_else(|| {
            self.package_siblings
                .keys()
                .chain(self.thread_siblings.keys())
                .copied()
                .collect()
        })
    }

    /// The number of distinct sibling lists of the counted CPUs; `None` unless every one has
    /// its list.
    fn groups(&self, lists: &BTreeMap<u32, String>) -> Option<u32> {
        let cpus = self.cpus();
        if cpus.is_empty() {
            return None;
        }
        let mut groups = BTreeSet::new();
        for cpu in &cpus {
            groups.insert(parse_cpulist(lists.get(cpu)?)?);
        }
        u32::try_from(groups.len()).ok()
    }

    pub fn threads(&self) -> Option<u32> {
        self.online
            .as_ref()
            .filter(|o| !o.is_empty())
            .and_then(|o| u32::try_from(o.len()).ok())
    }

    pub fn cores(&self) -> Option<u32> {
        self.groups(&self.thread_siblings)
    }

    pub fn sockets(&self) -> Option<u32> {
        self.groups(&self.package_siblings)
    }
}

/// A kernel CPU list (`0-3,8,10-11`) as its CPUs; `None` when it is not one.
pub fn parse_cpulist(text: &str) -> Option<BTreeSet<u32>> {
    let mut cpus = BTreeSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => {
                cpus.insert(part.parse().ok()?);
            }
        }
    }
    Some(cpus)
}

/// The script's output split into the cpuinfo text, the kernel's topology and dmidecode's
/// text and exit code (where it ran).
pub fn split_output(stdout: &str) -> (String, Topology, Option<(String, Option<i32>)>) {
    let (grep, rest) = match stdout.find("==> dmidecode\n") {
        Some(i) => stdout.split_at(i),
        None => (stdout, ""),
    };
    let mut cpuinfo = String::new();
    let mut topology = Topology::default();
    let cpu_dir = format!("{SYS_CPU}/");
    for line in grep.lines() {
        if let Some(l) = line.strip_prefix(CPUINFO).and_then(|l| l.strip_prefix(':')) {
            cpuinfo.push_str(l);
            cpuinfo.push('\n');
        } else if let Some(rest) = line.strip_prefix(cpu_dir.as_str()) {
            let Some((path, value)) = rest.split_once(':') else {
                continue;
            };
            if path == "online" {
                topology.online = parse_cpulist(value);
                continue;
            }
            let Some((cpu, file)) = path.split_once("/topology/") else {
                continue;
            };
            let Some(n) = cpu.strip_prefix("cpu").and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let map = match file {
                "core_siblings_list" => &mut topology.package_siblings,
                "thread_siblings_list" => &mut topology.thread_siblings,
                _ => continue,
            };
            map.insert(n, value.trim().to_string());
        }
    }
    let dmi = dmidecode::from_sections(&batch::parse_sections(rest), "dmidecode");
    (cpuinfo, topology, dmi)
}

/// Populated processor sockets (type 4 `Status: Populated`) and the first processor's
/// `Version`, from dmidecode's output.
pub fn smbios_processors(text: &str) -> (u32, Option<String>) {
    let procs: Vec<_> = dmidecode::records(text)
        .into_iter()
        .filter(|r| r.kind == 4)
        .filter(|r| r.get("Type").is_none_or(|t| t == "Central Processor"))
        .filter(|r| r.get("Status").is_some_and(|s| s.starts_with("Populated")))
        .collect();
    let version = procs
        .iter()
        .filter_map(|r| r.get("Version"))
        .map(str::trim)
        .find(|v| !v.is_empty() && !v.eq_ignore_ascii_case("not specified"))
        .map(str::to_string);
    (u32::try_from(procs.len()).unwrap_or(u32::MAX), version)
}

/// What `/proc/cpuinfo` says about the processors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    pub model: Option<String>,
    /// Distinct `physical id`s; `None` when the file has none.
    pub sockets: Option<u32>,
    /// Distinct (`physical id`, `core id`) pairs; `None` without `core id`.
    pub cores: Option<u32>,
    /// `processor` entries (s390: `# processors`); `None` when it lists none.
    pub threads: Option<u32>,
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

/// Parses `/proc/cpuinfo` text; what it does not say is `None`.
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut s390_processors: Option<u32> = None;
    let mut s390_machine: Option<String> = None;
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
            // s390: `# processors    : 17` and `processor 1: version = 00, ..., machine = 2817`.
            "# processors" => s390_processors = value.parse().ok(),
            k if k.starts_with("processor ") && s390_machine.is_none() => {
                s390_machine = value
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| k.trim() == "machine")
                    .map(|(_, v)| v.trim().to_string());
            }
            _ => {}
        }
    }
    flush(&mut physical_id, &mut core_id);

    let threads = if threads > 0 {
        Some(threads)
    } else {
        s390_processors.filter(|n| *n > 0)
    };
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
        .or(s390_machine.map(|m| format!("IBM/S390 machine {m}")))
        .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "));
    let sockets = (!sockets.is_empty()).then(|| u32::try_from(sockets.len()).unwrap_or(u32::MAX));
    let cores = any_core_id.then(|| u32::try_from(cores.len()).unwrap_or(u32::MAX).max(1));
    CpuInfo {
        model,
        sockets,
        cores,
        threads,
    }
}

fn sudo_option(options: &Value) -> Result<bool, CollectError> {
    match options.get("sudo") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(CollectError::new(
            "bad_options",
            format!("option sudo must be true or false, not {other}"),
        )),
    }
}

/// The facts from `/proc/cpuinfo` (or why it could not be read) and the script's output (see
/// the crate docs for which source wins).
pub fn build(cpuinfo: Result<String, CollectError>, stdout: &str) -> Result<Value, CollectError> {
    let (in_output, topology, dmi) = split_output(stdout);
    let cpuinfo_error = cpuinfo.as_ref().err().map(ToString::to_string);
    let info = parse_cpuinfo(&cpuinfo.unwrap_or(in_output));
    let smbios = dmi
        .as_ref()
        .map(|(text, exit)| match dmidecode::failure(text, *exit) {
            Some(why) => Err(why),
            None => Ok(smbios_processors(text)),
        });
    let Some(threads) = topology.threads().or(info.threads) else {
        return Err(CollectError::parse(format!(
            "neither {CPUINFO} nor {SYS_CPU} lists a processor"
        )));
    };
    let mut data = Data::new();
    let model = info.model.clone().or_else(|| match &smbios {
        Some(Ok((_, version))) => version.clone(),
        _ => None,
    });
    if model.is_none() {
        match &cpuinfo_error {
            Some(e) => data.reason("model", format!("{CPUINFO}: {e}")),
            None => data.reason("model", format!("{CPUINFO} names no processor model")),
        };
    }
    let cores = topology.cores().or(info.cores).unwrap_or(threads);
    let sockets = match (topology.sockets().or(info.sockets), &smbios) {
        (Some(n), _) => Some(n),
        (None, Some(Ok((n, _)))) if *n > 0 => Some(*n),
        (None, smbios) => {
            let dmi = match smbios {
                Some(Err(why)) => format!("dmidecode: {why}"),
                Some(Ok(_)) => "dmidecode lists no populated processor".to_string(),
                None => "dmidecode not asked (the kernel exports a topology)".to_string(),
            };
            data.reason(
                "socket_count",
                format!("neither {SYS_CPU} nor {CPUINFO} tells the packages; {dmi}"),
            );
            None
        }
    };
    data.fact("model", model)
        .fact("socket_count", sockets)
        .fact("core_count", cores)
        .fact("thread_count", threads);
    data.build()
}

/// Collects the processor facts of `target` with one file read and one command.
pub fn collect(target: &Target<'_>, options: &Value) -> Result<Value, CollectError> {
    let sudo = sudo_option(options)?;
    // Both asked whatever the other gives, so that a dry run learns both.
    let cpuinfo = target.read_to_string(CPUINFO);
    let stdout = match (target.run(&script(sudo), TIMEOUT), &cpuinfo) {
        (Ok(out), _) => out.stdout,
        // The topology is unknown: cpuinfo alone tells what it can.
        (Err(_), Ok(_)) => String::new(),
        (Err(e), Err(_)) => return Err(e),
    };
    build(cpuinfo, &stdout)
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

    fn dir(case: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(case)
    }

    fn read(case: &str, file: &str) -> String {
        std::fs::read_to_string(dir(case).join(file)).expect("fixture")
    }

    /// What the script prints where the kernel exports no topology and dmidecode says
    /// `dmidecode` with exit code `exit` (the cases that recorded cpuinfo only).
    fn no_topology(dmidecode: &str, exit: i32) -> String {
        format!("==> dmidecode\n{dmidecode}\n==> dmidecode exit\n{exit}\n")
    }

    /// The output of a machine without dmidecode (synthetic, as sh says it).
    const NO_DMIDECODE: &str = "sh: 1: dmidecode: not found";

    fn run(cpuinfo: &str, stdout: &str) -> Value {
        FixtureExecutor::new("t")
            .file(CPUINFO, cpuinfo)
            .command(&script(false), stdout)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects")
    }

    /// A case's `cpuinfo` and the script's output on it.
    fn case(name: &str) -> (String, String) {
        let script = if dir(name).join("script.out").exists() {
            read(name, "script.out")
        } else if dir(name).join("script-adapted.out").exists() {
            read(name, "script-adapted.out")
        } else {
            no_topology(NO_DMIDECODE, 127)
        };
        (read(name, "cpuinfo"), script)
    }

    const CASES: [&str; 7] = [
        "firecracker-vm",
        "facter-amd64twentyfour",
        "facter-arm64",
        "facter-wo-physical-id",
        "lscpu-ppc64-POWER7-64cpu",
        "lscpu-s390-lpar",
        "lscpu-arm-A510-A710-A715-X3",
    ];

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for name in CASES {
            let (cpuinfo, stdout) = case(name);
            plugin_api::testing::golden(dir(name), &run(&cpuinfo, &stdout));
        }
    }

    fn facts(name: &str) -> Value {
        let (cpuinfo, stdout) = case(name);
        run(&cpuinfo, &stdout)["facts"].clone()
    }

    #[test]
    fn this_vm_amd_epyc_two_vcpus() {
        let data = facts("firecracker-vm");
        assert_eq!(data["model"], "AMD EPYC");
        assert_eq!(data["socket_count"], 1);
        assert_eq!(data["core_count"], 2);
        assert_eq!(data["thread_count"], 2);
    }

    #[test]
    fn power7_smt4_lpar_cores_from_thread_siblings() {
        // cpuinfo has neither physical nor core ids: it read as 64 cores before; lscpu says
        // 4 threads a core, 16 "sockets" (its package siblings).
        let data = facts("lscpu-ppc64-POWER7-64cpu");
        assert_eq!(data["model"], "POWER7 (architected), altivec supported");
        assert_eq!(data["thread_count"], 64);
        assert_eq!(data["core_count"], 16);
        assert_eq!(data["socket_count"], 16);
    }

    #[test]
    fn s390_lpar_with_another_cpuinfo_layout_and_offline_cpus() {
        // `processor 1: version = ...` lines: the collector used to fail ("lists no processor").
        let data = facts("lscpu-s390-lpar");
        assert_eq!(data["model"], "IBM/S390 machine 2817");
        // lscpu (tests/expected/lscpu/lscpu-s390-lpar): on-line 1-5,8-19, one thread a core,
        // and its parsable table puts the online CPUs in 7 sockets (0-6).
        assert_eq!(data["thread_count"], 17);
        assert_eq!(data["core_count"], 17);
        assert_eq!(data["socket_count"], 7);
    }

    #[test]
    fn arm64_big_little_phone_soc() {
        let data = facts("lscpu-arm-A510-A710-A715-X3");
        assert_eq!(data["thread_count"], 8);
        assert_eq!(data["core_count"], 8);
        // The kernel's packages are this SoC's three clusters (lscpu: 3 + 2 + 2 + 1 cores in
        // one "socket" per core type, as its package siblings say 0-2, 3-6, 7).
        assert_eq!(data["socket_count"], 3);
        // The first CPU's part (0xd46, Cortex-A510) is not in the server table: spelled out.
        assert_eq!(data["model"], "ARM implementer 0x41 part 0xd46");
    }

    #[test]
    fn dual_socket_xeon_with_hyperthreading() {
        let data = facts("facter-amd64twentyfour");
        assert_eq!(data["model"], "Intel(R) Xeon(R) CPU X5675 @ 3.07GHz");
        assert_eq!(data["socket_count"], 2);
        assert_eq!(data["core_count"], 12);
        assert_eq!(data["thread_count"], 24);
    }

    #[test]
    fn arm64_without_model_name_or_topology() {
        let (cpuinfo, stdout) = case("facter-arm64");
        let data = run(&cpuinfo, &stdout);
        assert_eq!(data["facts"]["model"], "Cavium ThunderX 88XX");
        assert_eq!(data["facts"]["core_count"], 2);
        assert_eq!(data["facts"]["thread_count"], 2);
        // Nothing tells the sockets: null, and why.
        assert_eq!(data["facts"]["socket_count"], Value::Null);
        assert!(data["reasons"]["socket_count"]
            .as_str()
            .is_some_and(|r| r.contains("dmidecode not installed")));
    }

    #[test]
    fn vm_without_physical_id_takes_sockets_from_smbios() {
        // Two recordings put together: facter's cpuinfo of a VM without `physical id` and
        // facter's dmidecode of a VMware VM (two populated type-4 sockets).
        let cpuinfo = include_str!("../fixtures/facter-wo-physical-id/cpuinfo");
        let data = run(
            cpuinfo,
            &no_topology(
                include_str!("../../board/fixtures/vmware-vm/dmidecode.txt"),
                0,
            ),
        )["facts"]
            .clone();
        assert_eq!(data["model"], "Intel(R) Xeon(R) CPU E5-2697 v4 @ 2.30GHz");
        assert_eq!(data["socket_count"], 2);
        assert_eq!(data["core_count"], 4);
        assert_eq!(data["thread_count"], 4);
        // Without dmidecode: unknown.
        let data = facts("facter-wo-physical-id");
        assert_eq!(data["socket_count"], Value::Null);
    }

    #[test]
    fn unknown_arm_core_is_spelled_out() {
        let info = parse_cpuinfo("processor\t: 0\nCPU implementer\t: 0x61\nCPU part\t: 0x022\n");
        assert_eq!(
            info.model.as_deref(),
            Some("ARM implementer 0x61 part 0x022")
        );
    }

    #[test]
    fn cpulists() {
        assert_eq!(
            parse_cpulist("0-2,8,10-11"),
            Some(BTreeSet::from([0, 1, 2, 8, 10, 11]))
        );
        assert_eq!(parse_cpulist("1"), Some(BTreeSet::from([1])));
        assert_eq!(parse_cpulist("x"), None);
    }

    #[test]
    fn the_script_runs_here_and_sudo_only_changes_dmidecode() {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script(false))
            .output()
            .expect("sh");
        let (_, topology, dmi) = split_output(&String::from_utf8_lossy(&out.stdout));
        assert!(topology.threads().is_some());
        assert_eq!(dmi, None, "a kernel topology: no dmidecode");
        assert!(script(true).contains("sudo -n dmidecode -t 4"));
        assert_eq!(
            script(true).replace("sudo -n dmidecode", "X"),
            script(false).replace("PATH=\"$PATH:/usr/sbin:/sbin\" dmidecode", "X")
        );
        let err = FixtureExecutor::new("t")
            .with_target(|t| collect(t, &json!({ "sudo": "yes" })))
            .expect_err("bad option");
        assert_eq!(err.kind, "bad_options");
    }

    #[test]
    fn no_processor_anywhere_is_a_parse_error() {
        // No cpuinfo, and a script that printed nothing.
        let err = FixtureExecutor::new("t")
            .with_target(|t| collect(t, &json!({})))
            .expect_err("nothing listed");
        assert_eq!(err.kind, "parse");
        let err = FixtureExecutor::new("t")
            .file(CPUINFO, "")
            .command(&script(false), "")
            .with_target(|t| collect(t, &json!({})))
            .expect_err("nothing listed");
        assert_eq!(err.kind, "parse");
    }

    #[test]
    fn topology_alone_tells_threads_cores_and_sockets() {
        // cpuinfo unreadable: the kernel's topology still tells the counts; the model is
        // null with the reason.
        let data = FixtureExecutor::new("t")
            .command(
                &script(false),
                include_str!("../fixtures/lscpu-ppc64-POWER7-64cpu/script-adapted.out"),
            )
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(data["facts"]["thread_count"], 64);
        assert_eq!(data["facts"]["core_count"], 16);
        assert_eq!(data["facts"]["model"], Value::Null);
        assert!(data["reasons"]["model"]
            .as_str()
            .is_some_and(|r| r.starts_with("/proc/cpuinfo: not_found")));
    }

    /// `lscpu`'s value of `field` on this machine (`LC_ALL=C lscpu`), where it has one.
    fn lscpu(field: &str) -> Option<String> {
        let out = std::process::Command::new("lscpu")
            .env("LC_ALL", "C")
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == field).then(|| v.trim().to_string())
        })
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-cpu -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_file(CPUINFO)
            .record_command(&script(false))
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        plugin_api::data::validate(&data, &Default::default()).expect("valid");
        let facts = &data["facts"];
        // Parity with lscpu, an independent reader of the same kernel interfaces.
        let n = |f: &str| lscpu(f).and_then(|v| v.parse::<u64>().ok());
        let threads = facts["thread_count"].as_u64().expect("threads");
        if let Some(online) = lscpu("On-line CPU(s) list") {
            assert_eq!(
                parse_cpulist(&online).map(|c| c.len() as u64),
                Some(threads),
                "{online}"
            );
        }
        if let (Some(sockets), Some(cores_per_socket)) = (n("Socket(s)"), n("Core(s) per socket")) {
            assert_eq!(facts["socket_count"].as_u64(), Some(sockets));
            assert_eq!(
                facts["core_count"].as_u64(),
                Some(sockets * cores_per_socket)
            );
        }
        if let Some(model) = lscpu("Model name") {
            assert_eq!(
                facts["model"]
                    .as_str()
                    .map(|m| m.split_whitespace().collect::<Vec<_>>()),
                Some(model.split_whitespace().collect::<Vec<_>>())
            );
        }
    }
}
