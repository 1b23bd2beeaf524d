//! The `virt` collector: is the target bare metal, a virtual machine (which hypervisor) or a
//! container (which runtime)?
//!
//! One round trip: one `sh` script (see [`script`]) reads, with shell builtins, the DMI strings of
//! `/sys/class/dmi/id` that systemd-detect-virt reads (`sys_vendor`, `product_name`,
//! `product_version`, `board_vendor`, `bios_vendor`, and `product_uuid`), `/proc/1/cgroup`, the
//! markers container engines leave (`/.dockerenv`, `/run/.containerenv`, `/run/systemd/container`,
//! `/run/host/container-manager`), `/sys/hypervisor/type` and `/proc/xen/capabilities` (Xen),
//! `/proc/sys/kernel/osrelease` (WSL), `/proc/sysinfo` (s390x), the device tree's
//! `hypervisor/compatible` (arm64 and POWER guests), the first `flags` line of `/proc/cpuinfo`
//! and POWER's `platform` and `machine` lines, and runs `systemd-detect-virt` once where that tool
//! exists (it names the container if there is one, else the VM), unless a container marker is
//! there: `/run/host/container-manager` or `/run/systemd/container` with a name in it,
//! `/run/.containerenv` or `/.dockerenv` name the container the way systemd-detect-virt would (it
//! reads the same files), and the tool is the most expensive process the collector would start
//! (~10 ms of CPU, most of it linking libsystemd-shared). `detected_by` is then `marker`. Where
//! systemd-detect-virt would decide otherwise despite such a file (an OpenVZ, WSL or proot
//! container, or a `container=` in PID 1's environment, all checked before the files) this
//! collector says what the marker says. Without the tool and without a marker, PID 1's
//! `container=` (`/proc/1/environ`, readable by root only) is read with `tr` and `grep`, and where
//! the DMI strings name no hypervisor: on an x86 CPU with the `hypervisor` flag `lscpu`'s
//! `Hypervisor vendor` (the CPUID signature, which a shell cannot read otherwise), else the SMBIOS
//! "virtual machine" bit (`od` of `/sys/firmware/dmi/entries/0-0/raw`, root only).
//!
//! Its data (report schema 2), facts only:
//! - `kind`: `bare_metal`, `vm` or `container` (a container wins over the VM it runs in);
//! - `technology`: systemd-detect-virt's identifier of the VM or container technology (`kvm`,
//!   `qemu`, `vmware`, `microsoft`, `oracle`, `xen`, `amazon`, `google`, `powervm`, `zvm`,
//!   `docker`, `podman`, `lxc`, `systemd-nspawn`, `wsl`, `container-other`, ...), `null` on bare
//!   metal;
//! - `hypervisor`: the VM technology under the target (for a VM its own technology, for a container
//!   in a VM that VM's, from DMI: systemd-detect-virt names only the container then), `null` on
//!   bare metal and where it cannot be told;
//! - `detected_by`: which evidence decided (`systemd-detect-virt`, `dmi`, `sysfs`
//!   (`/sys/hypervisor/type`, with `/proc/xen/capabilities` for a dom0), `device-tree`,
//!   `cpuinfo` (x86 flags, POWER platform), `sysinfo` (s390x), `lscpu` (the CPUID signature),
//!   `kernel` (WSL's kernel release),
//!   `marker`, `environ` (PID 1's `container=`), `cgroup`);
//! - `system_uuid`: the DMI `product_uuid` the guest sees (lower case), the UUID the hypervisor
//!   knows its VM by; readable by root only (`reasons.system_uuid` says so otherwise). It is a fact,
//!   not an identity hint: the `board` collector declares that hint from the same file.
//!
//! systemd-detect-virt decides where it was asked. Without it, in its order where it matters:
//! - a container: WSL from the kernel release (`Microsoft`, `WSL`); the markers; PID 1's
//!   `container=`; `/proc/1/cgroup` (`/docker/`, `/lxc/`, `libpod`, `kubepods`). A manager's name
//!   that is not one of systemd-detect-virt's identifiers is `container-other` (`crio`), `oci` the
//!   engine whose file is there, as the tool reports them;
//! - a VM: from the DMI strings that systemd-detect-virt reads first (VirtualBox, Xen, `Amazon
//!   EC2`, Parallels, Google), except an EC2 bare-metal instance (product `*.metal`, or an x86 CPU
//!   without the `hypervisor` flag), which is bare metal; lscpu's CPUID vendor (`KVM` behind
//!   `Nutanix`/`AHV`, `Red Hat`/`RHEV Hypervisor`, `Alibaba Cloud`, SeaBIOS's `Bochs`; `Xen`,
//!   `VMware`; not in a Xen dom0); the other DMI strings (`VMware, Inc.`, `QEMU`, `Microsoft
//!   Corporation`/`Virtual Machine`, product `HVM domU`, `Bochs`, BIOS vendor `Xen`, product
//!   version `Hyper-V`, ...);
//!   `/sys/hypervisor/type` (a Xen dom0, `control_d` in `/proc/xen/capabilities`, is bare metal as
//!   systemd-detect-virt says, with a reason); the device tree (`linux,kvm`, `xen`, `vmware`);
//!   POWER's platform (`pSeries` under PowerVM, or KVM when the machine is "emulated by qemu";
//!   `PowerNV` is bare metal); s390x's `VM00 Control Program` (`z/VM`: `zvm`, else `kvm`; an LPAR
//!   without it is bare metal, as systemd-detect-virt says); lscpu's `Microsoft` (QEMU offers
//!   Hyper-V's signature too, so it comes last, as in systemd-detect-virt); the SMBIOS "virtual
//!   machine" bit (`vm-other`, as systemd-detect-virt says); else the CPU's `hypervisor` flag
//!   (`technology` then `null` with a reason);
//! - bare metal when the CPU flags are readable and name no hypervisor and DMI names no hypervisor
//!   either.
//!
//! A container whose engine leaves no marker and uses a cgroup namespace (cgroup v2 shows `0::/`)
//! cannot be told from its host without systemd-detect-virt or root; an x86 guest whose DMI
//! strings name no hypervisor has only the `hypervisor` flag where lscpu is missing (busybox);
//! an arm64 host without DMI, device tree hypervisor node and the tool has `kind` `null` with a
//! reason; an arm64 VM whose DMI names no hypervisor is bare metal unless root reads the SMBIOS
//! bit (systemd-detect-virt says the same).
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
const FILES: [&str; 16] = [
    "/sys/class/dmi/id/sys_vendor",
    "/sys/class/dmi/id/product_name",
    "/sys/class/dmi/id/product_uuid",
    "/sys/class/dmi/id/product_version",
    "/sys/class/dmi/id/board_vendor",
    "/sys/class/dmi/id/bios_vendor",
    "/proc/1/cgroup",
    "/.dockerenv",
    "/run/.containerenv",
    "/run/systemd/container",
    "/run/host/container-manager",
    "/sys/hypervisor/type",
    "/proc/xen/capabilities",
    "/proc/sys/kernel/osrelease",
    "/proc/sysinfo",
    "/proc/device-tree/hypervisor/compatible",
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
            // Builtins only: the first flags line, then stop (cpuinfo has one block per CPU);
            // POWER has no flags line but a `platform` and a `machine` line at the end.
            // `hv` remembers the x86 `hypervisor` flag for the command below.
            "hv=; while IFS= read -r l; do case $l in flags*|Features*) printf '%s\\n' \"$l\"; \
             case \" $l \" in *' hypervisor '*) hv=1;; esac; break;; \
             platform*|machine*) printf '%s\\n' \"$l\";; esac; done < /proc/cpuinfo",
        )
        .command(
            DETECT,
            // One call (about 10 ms, the most expensive process this collector starts: it links
            // libsystemd-shared): the container if there is one, else the VM, else `none`. Not
            // asked where a container engine's marker file names the container already (what
            // systemd-detect-virt would answer from the same files): `marker`. Without the tool,
            // PID 1's `container=` (readable by root only; systemd-detect-virt's fallback where
            // PID 1 is not systemd) as `pid1 container=NAME`; under a hypervisor (the x86 flag),
            // lscpu's hypervisor vendor (from the CPUID signature) as `lscpu NAME`, unless the DMI
            // strings name a hypervisor the signature would not change (lscpu costs ~20 ms: it
            // reads the whole CPU topology and caches); without the flag, the SMBIOS "virtual
            // machine" bit (BIOS characteristics extension byte 2, bit 4; root only) as
            // `smbios-vm 0|1`, where the BIOS structure has that byte.
            "if [ -s /run/host/container-manager ] || [ -s /run/systemd/container ] || \
             [ -e /run/.containerenv ] || [ -e /.dockerenv ]; \
             then echo marker; elif command -v systemd-detect-virt >/dev/null 2>&1; then \
             echo \"any $(systemd-detect-virt 2>/dev/null)\"; else echo missing; \
             if [ -r /proc/1/environ ]; then \
             e=$(tr '\\000' '\\n' 2>/dev/null < /proc/1/environ | grep '^container=') && \
             printf 'pid1 %s\\n' \"$e\"; fi; \
             d=; for f in sys_vendor product_name bios_vendor; do l=; \
             [ -r /sys/class/dmi/id/$f ] && read -r l < /sys/class/dmi/id/$f; d=\"$d $l\"; done; \
             case $d in *VMware*|*VirtualBox*|*innotek*|*Xen*|*Amazon\\ EC2*|*Google*|*Parallels*|\
             *Microsoft*) ;; *) if [ -n \"$hv\" ]; then if command -v lscpu >/dev/null 2>&1; then \
             v=$(LC_ALL=C lscpu 2>/dev/null | grep '^Hypervisor vendor:') && \
             printf 'lscpu %s\\n' \"${v#Hypervisor vendor:}\"; fi; \
             elif [ -r /sys/firmware/dmi/entries/0-0/raw ]; then \
             od -An -tu1 -N20 /sys/firmware/dmi/entries/0-0/raw 2>/dev/null | { n=0; b=0; \
             while read -r a; do for x in $a; do n=$((n+1)); [ $n -eq 2 ] && l=$x; \
             [ $n -eq 20 ] && b=$x; done; done; if [ $n -ge 20 ] && [ \"$l\" -ge 20 ]; then \
             echo \"smbios-vm $(( b / 16 % 2 ))\"; fi; }; \
             fi;; esac; fi",
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

/// The hypervisors one DMI string names (lower case), the way systemd-detect-virt names them.
fn dmi_name(s: &str) -> Option<&'static str> {
    let table: [(&str, &str); 15] = [
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
        ("kubevirt", "kvm"),
        ("hyper-v", "microsoft"),
        ("apple virtualization", "apple"),
    ];
    table
        .into_iter()
        .find(|(needle, _)| s.starts_with(needle) || s.split_whitespace().any(|w| w == *needle))
        .map(|(_, id)| id)
}

/// The hypervisor a DMI vendor and product name, the way systemd-detect-virt names it.
pub fn dmi_hypervisor(vendor: &str, product: &str) -> Option<&'static str> {
    let v = vendor.trim().to_ascii_lowercase();
    let p = product.trim().to_ascii_lowercase();
    // The product first: a KVM guest often says vendor "QEMU", product "KVM"; a Nitro instance
    // vendor "Amazon EC2".
    if let Some(id) = dmi_name(&p).or_else(|| dmi_name(&v)) {
        return Some(id);
    }
    if v.starts_with("microsoft") && p.contains("virtual machine") {
        return Some("microsoft");
    }
    if v.starts_with("apple") && p.contains("virtual") {
        return Some("apple");
    }
    // Xen's hvmloader names every HVM guest's product so, whatever the vendor ("Red Hat" on
    // RHEL 5's Xen).
    if p == "hvm domu" {
        return Some("xen");
    }
    None
}

/// The hypervisor the DMI strings name: the system's vendor and product first, then what
/// systemd-detect-virt reads as well, the board vendor, the BIOS vendor (a Xen HVM guest's
/// `Xen`) and the product version (`Hyper-V` on some Hyper-V guests).
pub fn dmi_vm(
    vendor: &str,
    product: &str,
    board_vendor: &str,
    bios_vendor: &str,
    product_version: &str,
) -> Option<&'static str> {
    dmi_hypervisor(vendor, product).or_else(|| {
        [board_vendor, bios_vendor, product_version]
            .into_iter()
            .find_map(|s| dmi_name(&s.trim().to_ascii_lowercase()))
    })
}

/// An EC2 bare-metal instance type (`i3.metal`, `m7g.metal-48xl`): systemd-detect-virt's test
/// where the SMBIOS "virtual machine" bit is not readable (root only).
pub fn ec2_metal(product: &str) -> bool {
    product
        .find(".metal")
        .is_some_and(|i| matches!(product[i + 6..].chars().next(), None | Some('-')))
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

/// A container manager's name (`container=`, `/run/systemd/container`) as systemd-detect-virt
/// reports it: its own identifiers as they are, any other name `container-other`; `oci` (which
/// some images hard-code) is decided by the engines' files where there is one.
fn container_name(name: &str, files: Option<&str>) -> String {
    match name {
        "oci" => files.unwrap_or("container-other").to_string(),
        n if CONTAINER_IDS.contains(&n) => n.to_string(),
        _ => "container-other".to_string(),
    }
}

/// The hypervisor lscpu's `Hypervisor vendor` names, as systemd-detect-virt names it. On x86 lscpu
/// reads the CPUID signature first (`KVMKVMKVM`: `KVM`, `XenVMMXenVMM`: `Xen`, `Microsoft Hv`:
/// `Microsoft`, `VMwareVMware`: `VMware`), then a few DMI vendors.
fn lscpu_vm(vendor: &str) -> Option<&'static str> {
    Some(match vendor.trim() {
        "KVM" => "kvm",
        "Xen" => "xen",
        "Microsoft" => "microsoft",
        "VMware" => "vmware",
        "Parallels" => "parallels",
        "Innotek GmbH" | "Oracle" => "oracle",
        _ => return None,
    })
}

/// The VM that POWER's `/proc/cpuinfo` names: a pSeries platform runs under a hypervisor
/// (PowerVM, or QEMU/KVM which says "emulated by qemu"), PowerNV on the bare machine (OPAL).
/// `Some(None)`: bare metal.
fn power_vm(cpuinfo: &str) -> Option<Option<&'static str>> {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim())
        })
    };
    match field("platform")? {
        "pSeries" if field("machine").is_some_and(|m| m.contains("emulated by qemu")) => {
            Some(Some("kvm"))
        }
        "pSeries" => Some(Some("powervm")),
        "PowerNV" => Some(None),
        _ => None,
    }
}

/// The VM that s390x's `/proc/sysinfo` names: `VM00 Control Program: z/VM ...` under z/VM,
/// `KVM/Linux` under KVM; an LPAR without a `VM00` level runs on the machine's own
/// partitioning firmware, which systemd-detect-virt reports as `none`. `Some(None)`: bare metal.
fn sysinfo_vm(sysinfo: &str) -> Option<Option<&'static str>> {
    let cp = sysinfo.lines().find_map(|l| {
        l.strip_prefix("VM00 Control Program:")
            .map(|v| v.split_whitespace().next().unwrap_or(""))
    });
    match cp {
        Some("z/VM") => Some(Some("zvm")),
        Some(_) => Some(Some("kvm")),
        None if sysinfo.lines().any(|l| l.starts_with("LPAR ")) => Some(None),
        None => None,
    }
}

/// The hypervisor a device tree's `hypervisor/compatible` names (arm64, POWER, RISC-V guests),
/// as systemd-detect-virt reads it. The property is NUL-separated strings; the shell may keep or
/// drop the NULs, so only substrings are compared.
fn device_tree_vm(compatible: &str) -> &'static str {
    if compatible.starts_with("linux,kvm") {
        "kvm"
    } else if compatible.contains("xen") {
        "xen"
    } else if compatible.contains("vmware") {
        "vmware"
    } else {
        "vm-other"
    }
}

/// Reads the script's sections into a verdict.
pub fn decide(sections: &BTreeMap<String, Section>) -> Virt {
    let mut out = Virt::default();
    let dmi = |f: &str| content(sections, &format!("{DMI}/{f}")).map(str::trim);
    let vendor = dmi("sys_vendor");
    let product = dmi("product_name");

    // systemd-detect-virt: `any ID` (one call: the container, else the VM, else `none`), or
    // (older recordings) `vm ID` and `container ID` lines. `None`: that side is not known.
    // Without the tool, `pid1 container=NAME`: PID 1's environment.
    let mut detect_vm: Option<String> = None;
    let mut detect_container: Option<String> = None;
    let mut pid1: Option<String> = None;
    let mut lscpu: Option<&'static str> = None;
    let mut smbios_vm: Option<bool> = None;
    if let Some(text) = content(sections, DETECT) {
        for line in text.lines() {
            let (which, id) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
            let id = id.trim();
            if which == "smbios-vm" {
                smbios_vm = match id {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                };
                continue;
            }
            if which == "lscpu" {
                lscpu = lscpu_vm(id);
                continue;
            }
            if which == "pid1" {
                pid1 = id
                    .strip_prefix("container=")
                    .filter(|c| !c.is_empty())
                    .map(str::to_string);
                continue;
            }
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
    let hypervisor_flag = flags.lines().any(|l| {
        l.starts_with("flags")
            && l.split_once(':')
                .is_some_and(|(_, f)| f.split_whitespace().any(|w| w == "hypervisor"))
    });
    let mut dmi_named = dmi_vm(
        vendor.unwrap_or(""),
        product.unwrap_or(""),
        dmi("board_vendor").unwrap_or(""),
        dmi("bios_vendor").unwrap_or(""),
        dmi("product_version").unwrap_or(""),
    );
    // EC2 bare-metal instances carry the same DMI vendor as its VMs.
    let ec2_metal = dmi_named == Some("amazon")
        && (product.is_some_and(ec2_metal) || (x86_flags && !hypervisor_flag));
    if ec2_metal {
        dmi_named = None;
    }
    let sys_hypervisor = content(sections, "/sys/hypervisor/type")
        .map(str::trim)
        .filter(|t| !t.is_empty());
    // A Xen control domain (dom0) is the hypervisor's host: systemd-detect-virt says `none`.
    let xen_dom0 = sys_hypervisor == Some("xen")
        && content(sections, "/proc/xen/capabilities")
            .is_some_and(|c| c.split([',', '\n']).any(|w| w.trim() == "control_d"));
    let device_tree = content(sections, "/proc/device-tree/hypervisor/compatible")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(device_tree_vm);
    let power = power_vm(flags);
    let sysinfo = content(sections, "/proc/sysinfo").and_then(sysinfo_vm);
    let engine_files = if content(sections, "/run/.containerenv").is_some() {
        Some("podman")
    } else if content(sections, "/.dockerenv").is_some() {
        Some("docker")
    } else {
        None
    };
    let named = |f: &str| {
        content(sections, f)
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| container_name(c, engine_files))
    };
    let wsl = content(sections, "/proc/sys/kernel/osrelease")
        .is_some_and(|r| r.contains("Microsoft") || r.contains("WSL"));
    let marker = named("/run/host/container-manager")
        .or_else(|| named("/run/systemd/container"))
        .map(|m| ("marker", m))
        .or_else(|| {
            pid1.as_deref()
                .map(|c| ("environ", container_name(c, engine_files)))
        })
        .or_else(|| engine_files.map(|f| ("marker", f.to_string())));
    let cgroup = content(sections, "/proc/1/cgroup").and_then(cgroup_container);

    // `bare`: evidence that the machine is not a guest, and which.
    let mut bare: Option<&'static str> = None;
    // systemd-detect-virt's order: the DMI vendors that run on KVM or cloak as another (VirtualBox,
    // Xen, EC2, Parallels, GCE), Xen, the CPUID signature (but Hyper-V's, which QEMU offers too,
    // only last), the other DMI vendors, then the other sources.
    let dmi_first =
        dmi_named.filter(|h| ["oracle", "xen", "amazon", "parallels", "google"].contains(h));
    let cpuid = lscpu.filter(|h| *h != "microsoft");
    let (vm_by, vm) = if let Some(v) = detect_vm {
        (Some("systemd-detect-virt"), Some(v).filter(|v| v != "none"))
    } else if let Some(h) = dmi_first {
        (Some("dmi"), Some(h.to_string()))
    } else if let (Some(h), false) = (cpuid, xen_dom0) {
        (Some("lscpu"), Some(h.to_string()))
    } else if let Some(h) = dmi_named {
        (Some("dmi"), Some(h.to_string()))
    } else if xen_dom0 {
        bare = Some("sysfs");
        (None, None)
    } else if let Some(h) = sys_hypervisor {
        (Some("sysfs"), Some(h.to_string()))
    } else if let Some(h) = device_tree {
        (Some("device-tree"), Some(h.to_string()))
    } else if let Some(p) = power {
        if p.is_none() {
            bare = Some("cpuinfo");
        }
        (p.map(|_| "cpuinfo"), p.map(str::to_string))
    } else if let Some(z) = sysinfo {
        if z.is_none() {
            bare = Some("sysinfo");
        }
        (z.map(|_| "sysinfo"), z.map(str::to_string))
    } else if let Some(h) = lscpu {
        (Some("lscpu"), Some(h.to_string()))
    } else if smbios_vm == Some(true) {
        // The firmware says it is a VM but nothing names the hypervisor: systemd-detect-virt's
        // `vm-other`.
        (Some("dmi"), Some("vm-other".to_string()))
    } else if hypervisor_flag {
        (Some("cpuinfo"), None)
    } else {
        (None, None)
    };
    if ec2_metal && vm_by.is_none() {
        bare = Some("dmi");
    }
    let (container_by, container) = if have_detect {
        (
            Some("systemd-detect-virt"),
            detect_container.filter(|c| c != "none"),
        )
    } else if wsl {
        (Some("kernel"), Some("wsl".to_string()))
    } else if let Some((by, m)) = marker {
        (Some(by), Some(m))
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
    } else if have_detect || bare.is_some() || x86_flags || vendor.is_some() {
        // systemd-detect-virt said none twice; or the evidence names the machine itself (a Xen
        // dom0, an EC2 metal instance, PowerNV, an s390x LPAR); or the x86 flags and the DMI
        // vendor name no hypervisor and no container marker was found.
        out.kind = Some("bare_metal");
        out.detected_by = Some(if have_detect {
            "systemd-detect-virt"
        } else if let Some(by) = bare {
            by
        } else if x86_flags {
            "cpuinfo"
        } else {
            "dmi"
        });
        if bare == Some("sysinfo") && !have_detect {
            out.reasons.insert(
                "hypervisor",
                "an s390x LPAR (/proc/sysinfo has no VM level): it runs on the machine's \
                 partitioning firmware (PR/SM), which systemd-detect-virt reports as none"
                    .into(),
            );
        }
        if xen_dom0 && !have_detect {
            out.reasons.insert(
                "hypervisor",
                "a Xen dom0 (/proc/xen/capabilities: control_d): the host of the Xen guests, \
                 which systemd-detect-virt reports as none"
                    .into(),
            );
        }
    } else {
        out.reasons.insert(
            "kind",
            "no systemd-detect-virt, no DMI, no x86 CPU flags, no POWER platform, no s390x \
             sysinfo and no container marker: cannot tell"
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

    /// Recorded machines of virt-what's, util-linux's and ohai's test suites (`fixtures.md`): what
    /// a user checks, kind,
    /// technology, hypervisor and the evidence, for each.
    #[test]
    fn xen_hyperv_cloud_power_s390x_and_container_guests() {
        let n = Value::Null;
        let cases: [(&str, [&str; 4]); 36] = [
            ("xen-pv-domu-rhel5", ["vm", "xen", "xen", "sysfs"]),
            ("xen-hvm-domu-rhel5", ["vm", "xen", "xen", "dmi"]),
            ("xen-dom0-rhel5", ["bare_metal", "", "", "sysfs"]),
            ("aws-xen-hvm", ["vm", "xen", "xen", "dmi"]),
            ("aws-nitro-kvm", ["vm", "amazon", "amazon", "dmi"]),
            ("aws-nitro-arm64", ["vm", "amazon", "amazon", "dmi"]),
            ("aws-metal", ["bare_metal", "", "", "dmi"]),
            (
                "google-compute-engine-arm64",
                ["vm", "google", "google", "dmi"],
            ),
            ("alibaba-cloud-arm64", ["vm", "vm-other", "vm-other", "dmi"]),
            ("qemu-smbios-arm64", ["vm", "qemu", "qemu", "dmi"]),
            ("qemu-smbios-kvm-arm64", ["vm", "kvm", "kvm", "dmi"]),
            ("baremetal-thinkpad", ["bare_metal", "", "", "cpuinfo"]),
            ("hyperv-vm", ["vm", "microsoft", "microsoft", "dmi"]),
            ("vmware-esx41", ["vm", "vmware", "vmware", "dmi"]),
            ("kvm-bochs-dmi", ["vm", "kvm", "kvm", "lscpu"]),
            ("alibaba-cloud-x86", ["vm", "kvm", "kvm", "lscpu"]),
            ("nutanix-ahv", ["vm", "kvm", "kvm", "lscpu"]),
            ("rhev", ["vm", "kvm", "kvm", "lscpu"]),
            ("parallels-desktop", ["vm", "parallels", "parallels", "dmi"]),
            (
                "vmware-esx-arm64",
                ["vm", "vmware", "vmware", "device-tree"],
            ),
            ("xen-arm64", ["vm", "xen", "xen", "device-tree"]),
            ("lxc-pid1-environ", ["container", "lxc", "", "environ"]),
            ("podman-cgroup-v1", ["container", "podman", "", "environ"]),
            ("lxc-cgroup-v1", ["container", "lxc", "", "cgroup"]),
            (
                "docker-ce-nested-cgroup-v1",
                ["container", "docker", "", "cgroup"],
            ),
            (
                "docker-systemd-scope-cgroup-v1",
                ["container", "docker", "", "cgroup"],
            ),
            (
                "crio-pid1-environ",
                ["container", "container-other", "", "environ"],
            ),
            (
                "oci-pid1-environ",
                ["container", "container-other", "", "environ"],
            ),
            ("zvm-s390x", ["vm", "zvm", "zvm", "sysinfo"]),
            ("s390x-kvm-guest", ["vm", "kvm", "kvm", "sysinfo"]),
            ("s390x-kvm-in-zvm", ["vm", "kvm", "kvm", "sysinfo"]),
            ("s390x-lpar", ["bare_metal", "", "", "sysinfo"]),
            (
                "powervm-lpar-dedicated",
                ["vm", "powervm", "powervm", "cpuinfo"],
            ),
            (
                "powervm-lpar-shared",
                ["vm", "powervm", "powervm", "cpuinfo"],
            ),
            ("power-kvm-guest", ["vm", "kvm", "kvm", "cpuinfo"]),
            ("power-baremetal-powernv", ["bare_metal", "", "", "cpuinfo"]),
        ];
        let v = |s: &str| if s.is_empty() { n.clone() } else { json!(s) };
        for (name, [kind, tech, hyp, by]) in cases {
            let data = case(name);
            assert_eq!(
                facts(&data),
                (&v(kind), &v(tech), &v(hyp), &v(by)),
                "{name}: {data:#}"
            );
            // Never a verdict without saying why a field is null.
            assert_eq!(data["reasons"].get("kind"), None, "{name}");
        }
    }

    #[test]
    fn wsl_from_the_kernel_release_as_systemd_detect_virt_tells_it() {
        for name in ["wsl1-osrelease", "wsl2-osrelease"] {
            assert_eq!(
                facts(&case(name)),
                (
                    &json!("container"),
                    &json!("wsl"),
                    &Value::Null,
                    &json!("kernel")
                ),
                "{name}"
            );
        }
        // WSL 2's kernels of 2020 say only "microsoft" (lower case), which systemd-detect-virt
        // does not take for WSL (cloud kernels say it too): not a container, and with nothing
        // else recorded, no verdict.
        let data = case("wsl2-osrelease-2020");
        assert_eq!(facts(&data).0, &Value::Null);
        assert!(data["reasons"]["kind"]
            .as_str()
            .is_some_and(|r| r.contains("cannot tell")));
    }

    #[test]
    fn the_cpuid_signature_names_kvm_behind_a_vendors_dmi_and_its_absence_degrades() {
        let (_, nutanix) = cases()
            .into_iter()
            .find(|(n, _)| n == "nutanix-ahv")
            .expect("case");
        // Without lscpu (busybox, or not installed) only the hypervisor flag is left.
        let no_lscpu = nutanix.replace("lscpu  KVM\n", "");
        assert_ne!(no_lscpu, nutanix);
        let data = run(&no_lscpu);
        assert_eq!(
            facts(&data),
            (&json!("vm"), &Value::Null, &Value::Null, &json!("cpuinfo"))
        );
        assert!(data["reasons"]["technology"]
            .as_str()
            .is_some_and(|r| r.contains("Nutanix / AHV")));
        // The signature outranks a DMI vendor systemd-detect-virt reads after it (SeaBIOS's
        // `Bochs`), but not the ones it reads first (Parallels runs on a KVM signature).
        let (_, bochs) = cases()
            .into_iter()
            .find(|(n, _)| n == "kvm-bochs-dmi")
            .expect("case");
        assert_eq!(
            facts(&run(&bochs.replace("lscpu  KVM\n", ""))).1,
            &json!("bochs")
        );
        // Where lscpu ran anyway, Parallels' DMI still outranks the KVM signature it runs on.
        let (_, parallels) = cases()
            .into_iter()
            .find(|(n, _)| n == "parallels-desktop")
            .expect("case");
        let with_kvm = parallels.replace(
            "==> systemd-detect-virt\nmissing\n",
            "==> systemd-detect-virt\nmissing\nlscpu  KVM\n",
        );
        assert_ne!(with_kvm, parallels);
        assert_eq!(facts(&run(&with_kvm)).1, &json!("parallels"));
        // Hyper-V's signature only where nothing else names the hypervisor (QEMU offers it too).
        let hv = bochs.replace("lscpu  KVM", "lscpu  Microsoft");
        assert_eq!(facts(&run(&hv)).1, &json!("bochs"));
        let hv_only = hv
            .replace(
                "==> /sys/class/dmi/id/sys_vendor\nBochs\n",
                "==> /sys/class/dmi/id/sys_vendor\nx\n",
            )
            .replace(
                "==> /sys/class/dmi/id/product_name\nBochs\n",
                "==> /sys/class/dmi/id/product_name\nx\n",
            )
            .replace(
                "==> /sys/class/dmi/id/bios_vendor\nBochs\n",
                "==> /sys/class/dmi/id/bios_vendor\nx\n",
            );
        assert_eq!(facts(&run(&hv_only)).1, &json!("microsoft"));
    }

    #[test]
    fn lscpus_hypervisor_vendor_as_printed_here_names_the_vm_under_a_container() {
        // This machine without systemd-detect-virt: lscpu's real, padded line.
        let (_, out) = cases()
            .into_iter()
            .find(|(n, _)| n == "firecracker-docker-no-tool")
            .expect("case");
        assert!(out.contains("\nlscpu    "), "{out}");
        assert_eq!(
            facts(&run(&out)),
            (
                &json!("container"),
                &json!("docker"),
                &json!("kvm"),
                &json!("marker")
            )
        );
    }

    #[test]
    fn the_smbios_virtual_machine_bit_tells_an_unnamed_arm64_vm_as_root_only() {
        let (_, out) = cases()
            .into_iter()
            .find(|(n, _)| n == "alibaba-cloud-arm64")
            .expect("case");
        // Not root: the raw SMBIOS table is not readable, and DMI's `Alibaba Cloud` names no
        // hypervisor: bare metal, what systemd-detect-virt says there too.
        let not_root = out.replace("smbios-vm 1\n", "");
        assert_ne!(not_root, out);
        assert_eq!(facts(&run(&not_root)).0, &json!("bare_metal"));
        assert_eq!(
            facts(&run(&out.replace("smbios-vm 1", "smbios-vm 0"))).0,
            &json!("bare_metal")
        );
    }

    #[test]
    fn an_s390x_lpar_is_bare_metal_with_the_reason() {
        let data = case("s390x-lpar");
        assert!(data["reasons"]["hypervisor"]
            .as_str()
            .is_some_and(|r| r.contains("PR/SM")));
        assert_eq!(case("zvm-s390x")["reasons"].get("hypervisor"), None);
    }

    #[test]
    fn a_xen_dom0_is_the_host_not_a_guest() {
        let data = case("xen-dom0-rhel5");
        assert!(data["reasons"]["hypervisor"]
            .as_str()
            .is_some_and(|r| r.contains("dom0")));
        assert_eq!(
            data["facts"]["system_uuid"],
            "0a85a693-d841-4d4b-90a6-8d89e43e9a35"
        );
        // The same machine without control_d in /proc/xen/capabilities is a Xen guest.
        let (_, out) = cases()
            .into_iter()
            .find(|(n, _)| n == "xen-dom0-rhel5")
            .expect("case");
        let domu = out.replace(
            "==> /proc/xen/capabilities\ncontrol_d\n",
            "==> /proc/xen/capabilities\n\n",
        );
        assert_ne!(domu, out);
        assert_eq!(facts(&run(&domu)).1, &json!("xen"));
    }

    #[test]
    fn an_ec2_metal_instance_is_bare_metal_and_a_nitro_vm_is_not() {
        assert!(ec2_metal("i3.metal"));
        assert!(ec2_metal("m7g.metal-48xl"));
        assert!(!ec2_metal("c5.large"));
        assert!(!ec2_metal("i3.metalx"));
        // Without the product name, the missing hypervisor flag decides on x86.
        let (_, out) = cases()
            .into_iter()
            .find(|(n, _)| n == "aws-metal")
            .expect("case");
        let renamed = out.replace("i3.metal", "i3.16xlarge");
        assert_eq!(facts(&run(&renamed)).0, &json!("bare_metal"));
        // arm64 has no hypervisor flag: the product name alone decides (`a1.medium` is a VM).
        assert_eq!(facts(&case("aws-nitro-arm64")).0, &json!("vm"));
    }

    #[test]
    fn a_container_without_pid1_environ_falls_back_to_its_marker_files_and_cgroup() {
        let (_, podman) = cases()
            .into_iter()
            .find(|(n, _)| n == "podman-cgroup-v1")
            .expect("case");
        // Not root: PID 1's environment is not readable, the libpod cgroup still names podman.
        let no_environ = podman.replace("pid1 container=podman\n", "");
        assert_ne!(no_environ, podman);
        assert_eq!(
            facts(&run(&no_environ)),
            (
                &json!("container"),
                &json!("podman"),
                &Value::Null,
                &json!("cgroup")
            )
        );
        // `container=oci` is no engine: the engine's own file names it where there is one.
        let (_, oci) = cases()
            .into_iter()
            .find(|(n, _)| n == "oci-pid1-environ")
            .expect("case");
        let with_dockerenv = oci.replace("=!> /.dockerenv missing\n", "==> /.dockerenv\n\n");
        assert_ne!(with_dockerenv, oci);
        assert_eq!(facts(&run(&with_dockerenv)).1, &json!("docker"));
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
        assert_eq!(dmi_hypervisor("Red Hat", "HVM domU"), Some("xen"));
        assert_eq!(dmi_vm("Red Hat", "x", "", "Xen", ""), Some("xen"));
        assert_eq!(
            dmi_vm(
                "Microsoft Corporation",
                "Surface Pro",
                "",
                "",
                "Hyper-V UEFI Release v4.1"
            ),
            Some("microsoft")
        );
        assert_eq!(
            dmi_vm("Dell Inc.", "PowerEdge R740", "Dell Inc.", "Dell Inc.", ""),
            None
        );
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
