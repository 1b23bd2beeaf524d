//! The `virt` collector: is the target bare metal, a virtual machine (which hypervisor) or a
//! container (which runtime)?
//!
//! One round trip: one `sh` script (see [`script`]) reads the DMI strings of `/sys/class/dmi/id`
//! (`sys_vendor`, `product_name`, `product_uuid`), `/proc/1/cgroup`, the markers container
//! engines leave (`/.dockerenv`, `/run/.containerenv`, `/run/systemd/container`),
//! `/sys/hypervisor/type`, the first `flags` line of `/proc/cpuinfo` (shell builtins only), and
//! runs `systemd-detect-virt` once where that tool exists (it names the container if there is
//! one, else the VM), unless a container marker is there: `/run/systemd/container` with a name
//! in it, `/run/.containerenv` or `/.dockerenv` name the container the way systemd-detect-virt
//! would (it reads the same files), and the tool is the most expensive process the collector
//! would start (~10 ms of CPU, most of it linking libsystemd-shared). `detected_by` is then
//! `marker`. Where systemd-detect-virt would decide otherwise despite such a file (an OpenVZ, WSL
//! or proot container, or a `container=` in PID 1's environment, all checked before the files)
//! this collector says what the marker says.
//!
//! Its data (report schema 2), facts only:
//! - `kind`: `bare_metal`, `vm` or `container` (a container wins over the VM it runs in);
//! - `technology`: systemd-detect-virt's identifier of the VM or container technology (`kvm`,
//!   `qemu`, `vmware`, `microsoft`, `oracle`, `xen`, `amazon`, `docker`, `podman`, `lxc`,
//!   `systemd-nspawn`, ...), `null` on bare metal;
//! - `hypervisor`: the VM technology under the target (for a VM its own technology, for a container
//!   in a VM that VM's, from DMI: systemd-detect-virt names only the container then), `null` on
//!   bare metal and where it cannot be told;
//! - `detected_by`: which evidence decided (`systemd-detect-virt`, `dmi`, `cpuinfo`, `cgroup`,
//!   `marker`);
//! - `system_uuid`: the DMI `product_uuid` the guest sees (lower case), the UUID the hypervisor
//!   knows its VM by; readable by root only (`reasons.system_uuid` says so otherwise). It is a fact,
//!   not an identity hint: the `board` collector declares that hint from the same file.
//!
//! systemd-detect-virt decides where it was asked. Without it: a container from its markers or
//! `/proc/1/cgroup` (`/docker/`, `/lxc/`, `libpod`, `kubepods`); a VM from the DMI vendor and
//! product (`VMware, Inc.`, `QEMU`, `innotek GmbH`/`VirtualBox`, `Microsoft Corporation`/`Virtual
//! Machine`, `Xen`, `Amazon EC2`, `Google`, ...), `/sys/hypervisor/type`, else from the CPU's
//! `hypervisor` flag (`technology` then `null` with a reason); bare metal when the CPU flags are
//! readable and name no hypervisor and DMI names no hypervisor either. A container whose
//! engine leaves no marker and uses a cgroup namespace (cgroup v2 shows `0::/`) cannot be told
//! from its host without systemd-detect-virt; an arm64 host without DMI and without the tool has
//! `kind` `null` with a reason.
//!
//! On a hypervisor host the same script lists its guests ([`guests`]): the list `guests`, one part
//! per virtual machine by its SMBIOS system UUID, and the fact `unlisted_guests`. A host that is not
//! a hypervisor has neither.
//!
//! Errors: only when the script printed nothing at all.

pub mod guests;

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Script, Section},
    export_collector,
    serde_json::Value,
    CollectError, Data, Target,
};

const DMI: &str = "/sys/class/dmi/id";
const FILES: [&str; 8] = [
    "/sys/class/dmi/id/sys_vendor",
    "/sys/class/dmi/id/product_name",
    "/sys/class/dmi/id/product_uuid",
    "/proc/1/cgroup",
    "/.dockerenv",
    "/run/.containerenv",
    "/run/systemd/container",
    "/sys/hypervisor/type",
];
const FLAGS: &str = "cpuinfo flags";
/// The container identifiers of systemd-detect-virt (its other identifiers are VMs).
const CONTAINER_IDS: [&str; 11] = [
    "openvz",
    "lxc",
    "lxc-libvirt",
    "systemd-nspawn",
    "docker",
    "podman",
    "rkt",
    "wsl",
    "proot",
    "pouch",
    "container-other",
];
const DETECT: &str = "systemd-detect-virt";
/// Below the host's default collector timeout (10 s).
const TIMEOUT: Duration = Duration::from_secs(8);

/// The one command this collector runs on the target.
pub fn script() -> String {
    Script::files(FILES)
        .command(
            FLAGS,
            // Builtins only: the first flags line, then stop (cpuinfo has one block per CPU).
            "while IFS= read -r l; do case $l in flags*|Features*) printf '%s\\n' \"$l\"; break;; esac; \
             done < /proc/cpuinfo",
        )
        .command(
            DETECT,
            // One call (about 10 ms, the most expensive process this collector starts: it links
            // libsystemd-shared): the container if there is one, else the VM, else `none`. Not
            // asked where a container engine's marker file names the container already (what
            // systemd-detect-virt would answer from the same files): `marker`.
            "if [ -s /run/systemd/container ] || [ -e /run/.containerenv ] || [ -e /.dockerenv ]; \
             then echo marker; elif command -v systemd-detect-virt >/dev/null 2>&1; then \
             echo \"any $(systemd-detect-virt 2>/dev/null)\"; else echo missing; fi",
        )
        .build()
        + "; "
        + &guests::script("")
}

/// What the collector concluded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Virt {
    pub kind: Option<&'static str>,
    pub technology: Option<String>,
    pub hypervisor: Option<String>,
    pub detected_by: Option<&'static str>,
    pub system_uuid: Option<String>,
    /// Why a field is null, by field.
    pub reasons: BTreeMap<&'static str, String>,
}

fn content<'a>(sections: &'a BTreeMap<String, Section>, name: &str) -> Option<&'a str> {
    match sections.get(name) {
        Some(Section::Content(c)) => Some(c.as_str()),
        _ => None,
    }
}

/// The hypervisor a DMI vendor and product name, the way systemd-detect-virt names it.
pub fn dmi_hypervisor(vendor: &str, product: &str) -> Option<&'static str> {
    let v = vendor.trim().to_ascii_lowercase();
    let p = product.trim().to_ascii_lowercase();
    let table: [(&str, &str); 12] = [
        ("kvm", "kvm"),
        ("qemu", "qemu"),
        ("vmware", "vmware"),
        ("innotek gmbh", "oracle"),
        ("virtualbox", "oracle"),
        ("xen", "xen"),
        ("bochs", "bochs"),
        ("parallels", "parallels"),
        ("bhyve", "bhyve"),
        ("amazon ec2", "amazon"),
        ("google", "google"),
        ("openstack", "kvm"),
    ];
    // The product first: a KVM guest often says vendor "QEMU", product "KVM"; a Nitro instance
    // vendor "Amazon EC2".
    for s in [&p, &v] {
        for (needle, id) in table {
            if s.starts_with(needle) || s.split_whitespace().any(|w| w == needle) {
                return Some(id);
            }
        }
    }
    if v.starts_with("microsoft") && p.contains("virtual machine") {
        return Some("microsoft");
    }
    if v.starts_with("apple") && p.contains("virtual") {
        return Some("apple");
    }
    None
}

/// The container runtime `/proc/1/cgroup` names, if any.
pub fn cgroup_container(cgroup: &str) -> Option<&'static str> {
    for line in cgroup.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        if path.contains("/docker/") || path.contains("/docker-") {
            return Some("docker");
        }
        if path.contains("libpod") {
            return Some("podman");
        }
        if path.contains("/lxc/") || path.contains("/lxc.payload") {
            return Some("lxc");
        }
        if path.contains("kubepods") {
            return Some("container-other");
        }
    }
    None
}

/// Reads the script's sections into a verdict.
pub fn decide(sections: &BTreeMap<String, Section>) -> Virt {
    let mut out = Virt::default();
    let dmi = |f: &str| content(sections, &format!("{DMI}/{f}")).map(str::trim);
    let vendor = dmi("sys_vendor");
    let product = dmi("product_name");

    // systemd-detect-virt: `any ID` (one call: the container, else the VM, else `none`), or
    // (older recordings) `vm ID` and `container ID` lines. `None`: that side is not known.
    let mut detect_vm: Option<String> = None;
    let mut detect_container: Option<String> = None;
    if let Some(text) = content(sections, DETECT) {
        for line in text.lines() {
            let (which, id) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
            let id = id.trim();
            // An empty answer means it failed (it always prints an id, `none` included).
            if id.is_empty() {
                continue;
            }
            match which {
                "vm" => detect_vm = Some(id.to_string()),
                "container" => detect_container = Some(id.to_string()),
                "any" if CONTAINER_IDS.contains(&id) => detect_container = Some(id.to_string()),
                "any" => {
                    detect_vm = Some(id.to_string());
                    detect_container = Some("none".to_string());
                }
                _ => {}
            }
        }
    }
    let have_detect = detect_container.is_some();

    // The other evidence.
    let flags = content(sections, FLAGS).unwrap_or("");
    let x86_flags = flags.starts_with("flags");
    let hypervisor_flag = flags
        .split_once(':')
        .is_some_and(|(_, f)| f.split_whitespace().any(|w| w == "hypervisor"));
    let dmi_vm = dmi_hypervisor(vendor.unwrap_or(""), product.unwrap_or(""));
    let sys_hypervisor = content(sections, "/sys/hypervisor/type")
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let marker = if let Some(c) =
        content(sections, "/run/systemd/container").filter(|c| !c.trim().is_empty())
    {
        Some(c.trim().to_string())
    } else if content(sections, "/run/.containerenv").is_some() {
        Some("podman".to_string())
    } else if content(sections, "/.dockerenv").is_some() {
        Some("docker".to_string())
    } else {
        None
    };
    let cgroup = content(sections, "/proc/1/cgroup").and_then(cgroup_container);

    let (vm_by, vm) = if let Some(v) = detect_vm {
        (Some("systemd-detect-virt"), Some(v).filter(|v| v != "none"))
    } else if let Some(h) = dmi_vm {
        (Some("dmi"), Some(h.to_string()))
    } else if let Some(h) = sys_hypervisor {
        (Some("dmi"), Some(h.to_string()))
    } else if hypervisor_flag {
        (Some("cpuinfo"), None)
    } else {
        (None, None)
    };
    let (container_by, container) = if have_detect {
        (
            Some("systemd-detect-virt"),
            detect_container.filter(|c| c != "none"),
        )
    } else if let Some(m) = marker {
        (Some("marker"), Some(m))
    } else if let Some(c) = cgroup {
        (Some("cgroup"), Some(c.to_string()))
    } else {
        (None, None)
    };

    out.hypervisor = vm.clone();
    if container.is_some() {
        out.kind = Some("container");
        out.technology = container;
        out.detected_by = container_by;
        if vm.is_none() && hypervisor_flag {
            out.reasons.insert(
                "hypervisor",
                "the CPU has the hypervisor flag; nothing names the hypervisor".into(),
            );
        }
    } else if vm.is_some() || vm_by == Some("cpuinfo") {
        out.kind = Some("vm");
        out.technology = vm;
        out.detected_by = vm_by;
        if out.technology.is_none() {
            let why = format!(
                "the CPU has the hypervisor flag but DMI names no known hypervisor ({})",
                match (vendor, product) {
                    (Some(v), Some(p)) => format!("{v} / {p}"),
                    _ => "no DMI".to_string(),
                }
            );
            out.reasons.insert("technology", why.clone());
            out.reasons.insert("hypervisor", why);
        }
    } else if have_detect || x86_flags || vendor.is_some() {
        // systemd-detect-virt said none twice; or the x86 flags and the DMI vendor name no
        // hypervisor and no container marker was found.
        out.kind = Some("bare_metal");
        out.detected_by = Some(if have_detect {
            "systemd-detect-virt"
        } else if x86_flags {
            "cpuinfo"
        } else {
            "dmi"
        });
    } else {
        out.reasons.insert(
            "kind",
            "no systemd-detect-virt, no DMI, no x86 CPU flags and no container marker: cannot tell"
                .into(),
        );
        out.reasons.insert("technology", "kind unknown".to_string());
        out.reasons
            .insert("detected_by", "kind unknown".to_string());
    }

    let uuid_file = format!("{DMI}/product_uuid");
    match sections.get(&uuid_file) {
        Some(Section::Content(c)) => {
            let u = c.trim().to_ascii_lowercase();
            if u.is_empty() || u.chars().all(|c| c == '0' || c == '-') {
                out.reasons
                    .insert("system_uuid", "product_uuid holds no UUID".into());
            } else {
                out.system_uuid = Some(u);
            }
        }
        Some(Section::Unreadable(why)) if why.contains("permission") => {
            out.reasons
                .insert("system_uuid", format!("{uuid_file}: {why}: needs root"));
        }
        _ => {
            out.reasons
                .insert("system_uuid", "no DMI on this machine".into());
        }
    }
    out
}

/// Collects with one script.
pub fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
    let sections = batch::run(target, &script(), TIMEOUT, "virt")?;
    let v = decide(&sections);
    let mut data = Data::new();
    data.fact("kind", v.kind)
        .fact("technology", v.technology)
        .fact("hypervisor", v.hypervisor)
        .fact("detected_by", v.detected_by)
        .fact("system_uuid", v.system_uuid);
    for (field, why) in &v.reasons {
        data.reason(field, why.clone());
    }
    add_guests(&mut data, guests::decide(&sections));
    data.build()
}

/// The list `guests` and the fact `unlisted_guests`, on a hypervisor only.
fn add_guests(data: &mut Data, found: guests::Guests) {
    use plugin_api::serde_json::json;
    match found {
        guests::Guests::NotAHypervisor => {}
        guests::Guests::Unavailable(why) => {
            data.unavailable("guests", why.clone())
                .fact("unlisted_guests", Value::Null)
                .reason("unlisted_guests", why);
        }
        guests::Guests::Seen { guests, unlisted } => {
            data.fact("unlisted_guests", unlisted);
            let list = data.list("guests", &["system_uuid"]);
            for (uuid, g) in guests {
                list.part(
                    uuid.clone(),
                    json!({
                        "system_uuid": uuid,
                        "name": g.name,
                        "state": g.state,
                        "vcpu_count": g.vcpu_count,
                        "max_vcpu_count": g.max_vcpu_count,
                        "memory_bytes": g.memory_bytes,
                        "persistent": g.persistent,
                        "source": g.source,
                        "vmid": g.vmid,
                    }),
                );
            }
        }
    }
}

export_collector!(
    name = "virt",
    description = "bare metal, virtual machine (hypervisor) or container (runtime)",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::{serde_json::json, testing::FixtureExecutor};

    use super::*;

    fn fixture(case: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(case)
    }

    /// Every case directory holds the script's output as `script.out` or `script-adapted.out`.
    fn cases() -> Vec<(String, String)> {
        let mut cases: Vec<(String, String)> = std::fs::read_dir(fixture(""))
            .expect("fixtures")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_dir())
            .map(|dir| {
                let name = dir
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                let file = ["script.out", "script-adapted.out"]
                    .iter()
                    .map(|f| dir.join(f))
                    .find(|p| p.exists())
                    .unwrap_or_else(|| panic!("{name}: no script output"));
                let mut out = std::fs::read_to_string(file).expect("read");
                // A case with a `root/` tree of real files: the guest part of the script runs on it.
                if dir.join("root").is_dir() {
                    out.push_str(&guests::tests::run_on_tree(&name));
                }
                (name, out)
            })
            .collect();
        cases.sort();
        cases
    }

    fn run(out: &str) -> Value {
        FixtureExecutor::new("t")
            .command(&script(), out)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects")
    }

    fn case(name: &str) -> Value {
        let (_, out) = cases().into_iter().find(|(n, _)| n == name).expect("case");
        run(&out)
    }

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        let cases = cases();
        assert!(cases.len() >= 6, "{cases:?}");
        for (name, out) in cases {
            plugin_api::testing::golden(fixture(&name), &run(&out));
        }
    }

    fn facts(data: &Value) -> (&Value, &Value, &Value, &Value) {
        let f = &data["facts"];
        (
            &f["kind"],
            &f["technology"],
            &f["hypervisor"],
            &f["detected_by"],
        )
    }

    #[test]
    fn firecracker_docker_container_on_kvm() {
        let data = case("firecracker-docker");
        assert_eq!(
            facts(&data),
            (
                &json!("container"),
                &json!("docker"),
                &json!("kvm"),
                &json!("systemd-detect-virt")
            )
        );
        assert_eq!(data["facts"]["system_uuid"], Value::Null);
        assert_eq!(data["reasons"]["system_uuid"], "no DMI on this machine");
    }

    #[test]
    fn one_systemd_detect_virt_call_names_the_container_only() {
        let data = case("firecracker-docker-one-call");
        assert_eq!(
            facts(&data),
            (
                &json!("container"),
                &json!("docker"),
                &Value::Null,
                &json!("systemd-detect-virt")
            )
        );
        assert!(data["reasons"]["hypervisor"]
            .as_str()
            .is_some_and(|r| r.contains("hypervisor flag")));
    }

    #[test]
    fn a_container_marker_spares_systemd_detect_virt() {
        // This machine (a Docker container on Firecracker/KVM) with the script that asks the tool
        // only without a marker: the same container and technology as systemd-detect-virt said in
        // `firecracker-docker-one-call`, decided by `/.dockerenv`.
        let out = &cases()
            .into_iter()
            .find(|(n, _)| n == "firecracker-docker-marker")
            .expect("case")
            .1;
        assert!(out.contains("==> systemd-detect-virt\nmarker\n"), "{out}");
        let data = run(out);
        assert_eq!(
            facts(&data),
            (
                &json!("container"),
                &json!("docker"),
                &Value::Null,
                &json!("marker")
            )
        );
        let one_call = case("firecracker-docker-one-call");
        assert_eq!(data["facts"]["kind"], one_call["facts"]["kind"]);
        assert_eq!(data["facts"]["technology"], one_call["facts"]["technology"]);
        // An empty /run/systemd/container names nothing: the next marker decides.
        let empty = out.replace(
            "=!> /run/systemd/container missing\n",
            "==> /run/systemd/container\n\n",
        );
        assert_eq!(run(&empty)["facts"]["technology"], "docker");
    }

    #[test]
    fn vmware_guest_from_dmi_without_systemd_detect_virt() {
        let data = case("vmware-vm");
        assert_eq!(
            facts(&data),
            (
                &json!("vm"),
                &json!("vmware"),
                &json!("vmware"),
                &json!("dmi")
            )
        );
        assert_eq!(
            data["facts"]["system_uuid"],
            "9aee1a42-138e-e5ee-fcec-823dcd747694"
        );
    }

    #[test]
    fn virtualbox_guest_from_dmi() {
        let data = case("virtualbox-vm");
        assert_eq!(facts(&data).1, &json!("oracle"));
        assert_eq!(
            data["facts"]["system_uuid"],
            "784198ec-5827-476e-9e24-b0e98e8958f5"
        );
    }

    #[test]
    fn docker_container_from_cgroup_v1() {
        let data = case("docker-cgroup-v1");
        assert_eq!(
            facts(&data),
            (
                &json!("container"),
                &json!("docker"),
                &Value::Null,
                &json!("cgroup")
            )
        );
    }

    #[test]
    fn dell_server_is_bare_metal() {
        let data = case("dell-poweredge-m630");
        assert_eq!(facts(&data).0, &json!("bare_metal"));
        assert_eq!(facts(&data).1, &Value::Null);
        assert_eq!(data["reasons"].get("technology"), None);
    }

    #[test]
    fn hypervisor_flag_without_a_known_dmi_vendor() {
        let data = case("vm-hypervisor-flag-only");
        assert_eq!(facts(&data).0, &json!("vm"));
        assert_eq!(facts(&data).1, &Value::Null);
        assert!(data["reasons"]["technology"]
            .as_str()
            .is_some_and(|r| r.contains("hypervisor flag")));
    }

    #[test]
    fn dmi_names() {
        assert_eq!(
            dmi_hypervisor("QEMU", "Standard PC (i440FX + PIIX, 1996)"),
            Some("qemu")
        );
        assert_eq!(dmi_hypervisor("Red Hat", "KVM"), Some("kvm"));
        assert_eq!(
            dmi_hypervisor("Microsoft Corporation", "Virtual Machine"),
            Some("microsoft")
        );
        assert_eq!(dmi_hypervisor("Microsoft Corporation", "Surface Pro"), None);
        assert_eq!(dmi_hypervisor("Amazon EC2", "m5.large"), Some("amazon"));
        assert_eq!(dmi_hypervisor("Dell Inc.", "PowerEdge R740"), None);
        assert_eq!(dmi_hypervisor("Xen", "HVM domU"), Some("xen"));
        assert_eq!(cgroup_container("0::/"), None);
        assert_eq!(
            cgroup_container("0::/machine.slice/libpod-0a1b.scope"),
            Some("podman")
        );
    }

    #[test]
    fn nothing_printed_is_an_error() {
        let err = FixtureExecutor::new("t")
            .with_target(|t| collect(t, &json!({})))
            .expect_err("no sh");
        assert_eq!(err.kind, "command_failed");
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-virt -- --ignored"]
    fn live_this_machine() {
        // AUTO_RECORD=DIR writes this machine's script output as DIR/script.out (a new case).
        if let Ok(dir) = std::env::var("AUTO_RECORD") {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(script())
                .output()
                .expect("sh");
            std::fs::write(std::path::Path::new(&dir).join("script.out"), out.stdout)
                .expect("write");
        }
        let data = FixtureExecutor::new("local")
            .record_command(&script())
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        // Fact parity with systemd-detect-virt itself.
        let detect = |arg: &str| {
            std::process::Command::new("systemd-detect-virt")
                .arg(arg)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        if let Ok(any) = detect("--quiet").and_then(|_| detect("--container")) {
            let kind = if any != "none" { "container" } else { "" };
            if !kind.is_empty() {
                assert_eq!(data["facts"]["kind"], kind);
                assert_eq!(data["facts"]["technology"], any.as_str());
            }
        }
        if let (Ok(vm), Ok(container)) = (detect("--vm"), detect("--container")) {
            let want_kind = if container != "none" {
                "container"
            } else if vm != "none" {
                "vm"
            } else {
                "bare_metal"
            };
            assert_eq!(data["facts"]["kind"], want_kind);
            let tech = if container != "none" { &container } else { &vm };
            if want_kind != "bare_metal" {
                assert_eq!(data["facts"]["technology"], tech.as_str());
            }
            // With one call, the hypervisor under a container comes from DMI only.
            if vm != "none" && container == "none" {
                assert_eq!(data["facts"]["hypervisor"], vm.as_str());
            }
        }
    }
}
