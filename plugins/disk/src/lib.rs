//! The `disk` collector: the whole physical disks of the target.
//!
//! One command on the target: `lsblk -J -b -d -o NAME,SIZE,MODEL,SERIAL,ROTA,TYPE,TRAN,REV,WWN`
//! (plain words: run without a shell where the executor can, one process start fewer). Only
//! where it fails, a second command (see [`FALLBACK`]: over SSH one more round trip, for old hosts
//! only): `lsblk -P ...` (key="value" pairs) where lsblk is older than util-linux 2.27 and has no
//! JSON (CentOS 7 has 2.23), then in the same shell line `lsblk -P -b -d -o
//! NAME,SIZE,MODEL,ROTA,TYPE` where lsblk knows none of SERIAL, TRAN, REV, WWN (before 2.23:
//! TRAN and REV came in 2.23, WWN in 2.22). Both JSON
//! dialects are read: numbers and booleans as JSON numbers and `true`/`false` (current
//! util-linux) or as strings `"0"`/`"1"` (older releases, e.g. 2.31 on Ubuntu 18.04).
//!
//! Which devices count as disks: lsblk `TYPE` `disk` only (no partitions, LVM, device-mapper,
//! md RAID, loop or optical devices), and of those not the kernel's memory-backed and network
//! devices by name (`loop*`, `ram*`, `zram*`, `nbd*`, `rbd*`, `drbd*`, `dm-*`, `md*`, `fd*`,
//! `sr*`). A hardware RAID volume is what the OS sees as a disk, so it counts (its model names
//! the controller; the drives behind it need the controller's own tool).
//!
//! A disk of size 0 is a device without a medium: a BMC's virtual media (`AMI Virtual HDisk0`
//! on USB) with no image mounted, an empty card reader. It is real hardware an inventory may
//! want (and what ops look for when virtual media is left attached), so it is kept, marked
//! `media_present: false` with `size_bytes: 0`; every other disk has `media_present: true`
//! (`null` where lsblk gave no size). Inserting a medium changes these two attributes, not the
//! part's id.
//!
//! Its data (report schema 2) is the part list `disks`, keyed by `["serial", "name"]`: a disk's id
//! is its serial, else (no serial, or a serial two disks share: multipath) its name; its
//! attributes are `name`, `size_bytes`, `media_present`, `model`, `serial`, `rotational`, `kind`,
//! `transport` (lsblk's TRAN: `sata`, `sas`, `nvme`, `usb`, `fc`, `iscsi`, `virtio`, ...),
//! `firmware` (REV: the drive's firmware revision) and `wwn` (WWN, as lsblk prints it:
//! `0x5000c500a1b2c3d4`, `eui.…` for NVMe). A disk without a serial has a reason `NAME.serial`;
//! a column this lsblk does not have makes the attribute `null` on every disk with a reason
//! under its name (`firmware`, `transport`, `wwn`); an empty column means the device reports
//! none (virtio disks have no WWN or revision).
//!
//! `kind` is one of: `virtual_media` (a BMC's virtual media: USB transport and a `Virtual ...`
//! model), `virtual` (a hypervisor's disk: `vd*`/`xvd*` names, virtio transport, or a
//! model such as `QEMU HARDDISK`, `VMware Virtual disk`, `Virtual Disk`, `VBOX HARDDISK`), `nvme`,
//! `ssd` (not rotational), `hdd` (rotational), or `null` when lsblk does not say.

use std::time::Duration;

use plugin_api::{
    export_collector,
    serde_json::{self, json, Map, Value},
    CollectError, Data, Target,
};

/// Below the host's default collector timeout (10 s), so that the executor kills a hung command
/// and this collector reports it before the host gives up on the whole collector.
const TIMEOUT: Duration = Duration::from_secs(8);

/// The command this collector runs: lsblk's JSON.
pub const PRIMARY: &str = "lsblk -J -b -d -o NAME,SIZE,MODEL,SERIAL,ROTA,TYPE,TRAN,REV,WWN";

/// Asked only when [`PRIMARY`] failed: an lsblk without JSON, or without the newer columns.
pub const FALLBACK: &str = "lsblk -P -b -d -o NAME,SIZE,MODEL,SERIAL,ROTA,TYPE,TRAN,REV,WWN \
     2>/dev/null || lsblk -P -b -d -o NAME,SIZE,MODEL,ROTA,TYPE";

/// One whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub size_bytes: Option<u64>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub rotational: Option<bool>,
    pub kind: Option<&'static str>,
    pub transport: Option<String>,
    pub firmware: Option<String>,
    pub wwn: Option<String>,
}

impl Disk {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "size_bytes": self.size_bytes,
            "media_present": self.size_bytes.map(|s| s > 0),
            "model": self.model,
            "serial": self.serial,
            "rotational": self.rotational,
            "kind": self.kind,
            "transport": self.transport,
            "firmware": self.firmware,
            "wwn": self.wwn,
        })
    }
}

/// One lsblk row, its values as text whatever the dialect.
type Row = Map<String, Value>;

fn text(row: &Row, key: &str) -> Option<String> {
    match row.get(key)? {
        Value::String(s) => {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(row: &Row, key: &str) -> Option<u64> {
    match row.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(row: &Row, key: &str) -> Option<bool> {
    match row.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) => match s.trim() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Parses `lsblk -P` output: one device a line, `KEY="value"` pairs, `\xNN` escapes.
fn parse_pairs(stdout: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for line in stdout.lines() {
        let mut row = Row::new();
        let mut rest = line.trim();
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq].trim().to_ascii_lowercase();
            let after = &rest[eq + 2..];
            let Some(end) = after.find('"') else { break };
            row.insert(key, Value::String(unescape(&after[..end])));
            rest = &after[end + 1..];
        }
        if !row.is_empty() {
            rows.push(row);
        }
    }
    rows
}

/// Undoes lsblk's `\x20`-style escapes.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            if let Some(b) = s
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses lsblk's rows from either dialect.
fn parse_rows(stdout: &str) -> Result<Vec<Row>, CollectError> {
    if stdout.trim_start().starts_with('{') {
        let doc: Value = serde_json::from_str(stdout)
            .map_err(|e| CollectError::parse(format!("lsblk printed invalid JSON: {e}")))?;
        let devices = doc
            .get("blockdevices")
            .and_then(Value::as_array)
            .ok_or_else(|| CollectError::parse("lsblk JSON has no blockdevices list"))?;
        Ok(devices
            .iter()
            .filter_map(|d| d.as_object().cloned())
            .collect())
    } else {
        Ok(parse_pairs(stdout))
    }
}

const NOT_DISKS: [&str; 10] = [
    "loop", "ram", "zram", "nbd", "rbd", "drbd", "dm-", "md", "fd", "sr",
];
const VIRTUAL_MODELS: [&str; 8] = [
    "qemu harddisk",
    "qemu hard disk",
    "vmware virtual",
    "virtual disk",
    "vbox harddisk",
    "virtual_disk",
    "blockvolume",
    "persistentdisk",
];

fn kind(
    name: &str,
    model: Option<&str>,
    tran: Option<&str>,
    rota: Option<bool>,
) -> Option<&'static str> {
    let model = model.unwrap_or("").to_ascii_lowercase();
    if tran == Some("usb") && model.contains("virtual") {
        return Some("virtual_media");
    }
    if name.starts_with("vd")
        || name.starts_with("xvd")
        || tran == Some("virtio")
        || VIRTUAL_MODELS.iter().any(|m| model.contains(m))
    {
        return Some("virtual");
    }
    if tran == Some("nvme") || name.starts_with("nvme") {
        return Some("nvme");
    }
    rota.map(|r| if r { "hdd" } else { "ssd" })
}

/// The whole physical disks of an lsblk output (`-J` or `-P`), in lsblk's order.
pub fn parse_lsblk(stdout: &str) -> Result<Vec<Disk>, CollectError> {
    let mut disks = Vec::new();
    for row in parse_rows(stdout)? {
        let Some(name) = text(&row, "name") else {
            continue;
        };
        let name = name.strip_prefix("/dev/").unwrap_or(&name).to_string();
        if text(&row, "type").as_deref() != Some("disk")
            || NOT_DISKS.iter().any(|p| name.starts_with(p))
        {
            continue;
        }
        let size_bytes = number(&row, "size");
        let model = text(&row, "model");
        let rotational = boolean(&row, "rota");
        let tran = text(&row, "tran");
        disks.push(Disk {
            kind: kind(&name, model.as_deref(), tran.as_deref(), rotational),
            name,
            size_bytes,
            model,
            serial: text(&row, "serial"),
            rotational,
            transport: tran,
            firmware: text(&row, "rev"),
            wwn: text(&row, "wwn"),
        });
    }
    Ok(disks)
}

/// The attributes whose lsblk column is absent from every row (an lsblk too old to know it),
/// with the column's name.
pub fn missing_columns(stdout: &str) -> Result<Vec<(&'static str, &'static str)>, CollectError> {
    let rows = parse_rows(stdout)?;
    Ok([("transport", "tran"), ("firmware", "rev"), ("wwn", "wwn")]
        .into_iter()
        .filter(|(_, column)| !rows.is_empty() && rows.iter().all(|r| !r.contains_key(*column)))
        .collect())
}

/// Collects the disks of `target` with one command.
pub fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
    let primary = target.run(PRIMARY, TIMEOUT)?;
    let stdout = if primary.success() {
        primary.stdout
    } else {
        target.run_ok(FALLBACK, TIMEOUT)?
    };
    let disks = parse_lsblk(&stdout)?;
    let mut data = Data::new();
    for (field, column) in missing_columns(&stdout)? {
        data.reason(
            field,
            format!(
                "lsblk printed no {} column (util-linux before 2.23 lacks it)",
                column.to_ascii_uppercase()
            ),
        );
    }
    if disks.is_empty() {
        data.reason(
            "disks",
            "lsblk lists no whole disk (a container, or only network storage)",
        );
    }
    for d in &disks {
        if d.serial.is_none() {
            data.reason(
                &format!("{}.serial", d.name),
                "lsblk shows no serial (virtio without one, or udev data missing)",
            );
        }
    }
    let list = data.list("disks", &["serial", "name"]);
    for (d, id) in disks.iter().zip(ids(&disks)) {
        list.part(id, d.to_json());
    }
    data.build()
}

/// Each disk's id: its serial, else its name; a serial that several disks show (one disk seen
/// through two paths, or a bridge that reports its own serial) identifies none of them, so they
/// go by name.
pub fn ids(disks: &[Disk]) -> Vec<String> {
    let shared = |serial: &str| {
        disks
            .iter()
            .filter(|d| d.serial.as_deref() == Some(serial))
            .count()
            > 1
    };
    disks
        .iter()
        .map(|d| match &d.serial {
            Some(serial) if !shared(serial) => serial.clone(),
            _ => d.name.clone(),
        })
        .collect()
}

export_collector!(
    name = "disk",
    description =
        "whole physical disks: size, model, serial, kind, transport, firmware, WWN (lsblk)",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::testing::FixtureExecutor;

    use super::*;

    fn run(stdout: &str) -> Result<Value, CollectError> {
        FixtureExecutor::new("t")
            .command(PRIMARY, stdout)
            .with_target(|t| collect(t, &json!({})))
    }

    fn disks(data: &Value) -> &Vec<Value> {
        data["lists"]["disks"]["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("a list of disks: {data}"))
    }

    /// Each fixture case and the lsblk output the collector reads from it.
    const CASES: [(&str, &str); 5] = [
        ("firecracker-vm", "lsblk.json"),
        ("ansible-netapp-bmc-vmedia", "lsblk-adapted.json"),
        ("hyperv-ubuntu-18.04", "lsblk-O.json"),
        ("intel-rste-server", "lsblk-adapted.json"),
        ("util-linux-issue-305", "lsblk-adapted.json"),
    ];

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, file) in CASES {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(case);
            let stdout = std::fs::read_to_string(dir.join(file)).expect("fixture");
            let data = run(&stdout).expect("collects");
            plugin_api::testing::golden(&dir, &data);
        }
    }

    #[test]
    fn kinds_of_nvme_ssd_and_hdd_disks() {
        // Real lsblk output of a laptop (util-linux issue #305): an NVMe disk that lsblk 2.27
        // gave no transport, known by its name.
        let data = run(include_str!(
            "../fixtures/util-linux-issue-305/lsblk-adapted.json"
        ))
        .expect("collects");
        let d = disks(&data);
        assert_eq!(d[1]["name"], "nvme0n1");
        assert_eq!(d[1]["kind"], "nvme");
        assert_eq!(d[1]["id"], "nvme0n1", "no serial: its name");
        assert_eq!(d[0]["id"], "Z305B5JL");
        assert_eq!(d[0]["kind"], Value::Null, "no ROTA column recorded");
        // Synthetic rows, one per rule, in both JSON dialects (booleans, and "0"/"1" strings).
        let rows = r#"{"blockdevices": [
            {"name": "nvme0n1", "size": 1000204886016, "model": "Samsung SSD 980 PRO 1TB", "serial": "S5GXNF0R1", "rota": false, "type": "disk", "tran": "nvme"},
            {"name": "sda", "size": 480103981056, "model": "INTEL SSDSC2KB480G8", "serial": "PHYF1", "rota": false, "type": "disk", "tran": "sata"},
            {"name": "sdb", "size": 4000787030016, "model": "ST4000NM0035-1V4107", "serial": "ZC1", "rota": true, "type": "disk", "tran": "sas"},
            {"name": "sdc", "size": "960197124096", "model": "MZ7LH960", "serial": "S45N", "rota": "0", "type": "disk", "tran": "sata"},
            {"name": "sdd", "size": "2000398934016", "model": "WDC WD20EZBX", "serial": "WD-1", "rota": "1", "type": "disk", "tran": "sata"},
            {"name": "c0n1", "size": 512110190592, "model": "Dell Ent NVMe", "serial": "S6", "rota": false, "type": "disk", "tran": "nvme"}
        ]}"#;
        let data = run(rows).expect("collects");
        let kinds: Vec<_> = disks(&data)
            .iter()
            .map(|d| (d["name"].as_str(), d["kind"].as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (Some("nvme0n1"), Some("nvme")),
                (Some("sda"), Some("ssd")),
                (Some("sdb"), Some("hdd")),
                (Some("sdc"), Some("ssd")),
                (Some("sdd"), Some("hdd")),
                (Some("c0n1"), Some("nvme")),
            ]
        );
    }

    #[test]
    fn a_serial_two_disks_share_identifies_neither() {
        let rows = r#"{"blockdevices": [
            {"name": "sda", "size": 1, "serial": "MPATH1", "rota": true, "type": "disk"},
            {"name": "sdb", "size": 1, "serial": "MPATH1", "rota": true, "type": "disk"},
            {"name": "sdc", "size": 1, "serial": "S3", "rota": true, "type": "disk"}
        ]}"#;
        let data = run(rows).expect("collects");
        let ids: Vec<_> = disks(&data).iter().map(|d| d["id"].clone()).collect();
        assert_eq!(ids, [json!("sda"), json!("sdb"), json!("S3")]);
        assert_eq!(data["lists"]["disks"]["key"], json!(["serial", "name"]));
    }

    #[test]
    fn this_vm_virtio_disk_without_zram() {
        let data = run(include_str!("../fixtures/firecracker-vm/lsblk.json")).expect("collects");
        assert_eq!(
            data["lists"]["disks"]["parts"],
            json!([{
                "id": "vda",
                "name": "vda",
                "size_bytes": 274_877_906_944u64,
                "media_present": true,
                "model": null,
                "serial": null,
                "rotational": true,
                "kind": "virtual",
                "transport": null,
                "firmware": null,
                "wwn": null,
            }])
        );
        assert!(data["reasons"]["vda.serial"].is_string());
    }

    #[test]
    fn bmc_virtual_media_of_zero_bytes_kept_and_marked_netapp_wwn() {
        let data = run(include_str!(
            "../fixtures/ansible-netapp-bmc-vmedia/lsblk-adapted.json"
        ))
        .expect("collects");
        let d = disks(&data);
        let names: Vec<_> = d.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(
            names,
            ["sdb", "sdc", "sdd", "sde", "sdf", "sdg"],
            "sr0 is no disk"
        );
        assert_eq!(d[0]["size_bytes"], 0);
        assert_eq!(d[0]["media_present"], false);
        assert_eq!(d[0]["kind"], "virtual_media");
        assert_eq!(d[0]["transport"], "usb");
        // The four virtual disks share the BMC's serial: they go by name.
        assert_eq!(d[0]["id"], "sdb");
        assert_eq!(d[4]["media_present"], true);
        assert_eq!(d[4]["wwn"], "0x60080e500047c49c0000135a5c4572b1");
        assert_eq!(d[4]["id"], "SV84235026");
        assert_eq!(d[5]["wwn"], Value::Null);
    }

    #[test]
    fn firmware_transport_and_wwn_of_a_full_row() {
        // Synthetic row in current util-linux's JSON.
        let rows = r#"{"blockdevices": [
            {"name": "sda", "size": 480103981056, "model": "INTEL SSDSC2KB480G8", "serial": "PHYF1", "rota": false, "type": "disk", "tran": "sata", "rev": "XCV10110", "wwn": "0x55cd2e415123abcd"}
        ]}"#;
        let data = run(rows).expect("collects");
        let d = &disks(&data)[0];
        assert_eq!(d["firmware"], "XCV10110");
        assert_eq!(d["transport"], "sata");
        assert_eq!(d["wwn"], "0x55cd2e415123abcd");
        assert_eq!(data["reasons"], json!({}));
    }

    #[test]
    fn an_lsblk_without_rev_tran_wwn_columns_degrades_with_reasons() {
        // The oldest fallback's columns (NAME,SIZE,MODEL,ROTA,TYPE), as `-P` prints them.
        let out = "NAME=\"sda\" SIZE=\"500107862016\" MODEL=\"ST500DM002-1BD14\" ROTA=\"1\" TYPE=\"disk\"\n";
        let data = run(out).expect("collects");
        let d = &disks(&data)[0];
        assert_eq!(d["firmware"], Value::Null);
        assert_eq!(d["kind"], "hdd");
        assert_eq!(
            data["reasons"]["firmware"],
            "lsblk printed no REV column (util-linux before 2.23 lacks it)"
        );
        assert!(data["reasons"]["wwn"].is_string());
        assert!(data["reasons"]["transport"].is_string());
        assert!(data["reasons"]["sda.serial"].is_string());
        assert!(FALLBACK.ends_with("|| lsblk -P -b -d -o NAME,SIZE,MODEL,ROTA,TYPE"));
    }

    #[test]
    fn old_lsblk_strings_hyperv_disk() {
        // util-linux 2.31 (Ubuntu 18.04 on Hyper-V): every value a string, "rota": "1".
        let disks = parse_lsblk(include_str!("../fixtures/hyperv-ubuntu-18.04/lsblk-O.json"))
            .expect("parses");
        assert_eq!(disks.len(), 1);
        let d = &disks[0];
        assert_eq!(d.name, "sda");
        assert_eq!(d.size_bytes, Some(407_379_968));
        assert_eq!(d.model.as_deref(), Some("Virtual Disk"));
        assert_eq!(d.rotational, Some(true));
        assert_eq!(d.kind, Some("virtual"));
        // Padded with blanks by util-linux 2.31.
        assert_eq!(d.firmware.as_deref(), Some("1.0"));
        assert_eq!(d.wwn, None);
    }

    #[test]
    fn server_with_two_ssds_in_intel_rste_raid() {
        let data = run(include_str!(
            "../fixtures/intel-rste-server/lsblk-adapted.json"
        ))
        .expect("collects");
        let disks = disks(&data);
        let names: Vec<_> = disks.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(names, ["sda", "sdb"]);
        assert_eq!(disks[0]["serial"], "PHDV718305YD150MGN");
        assert_eq!(disks[0]["id"], "PHDV718305YD150MGN");
        assert_eq!(disks[1]["serial"], "PHDV71660DZB150MGN");
        assert_eq!(disks[0]["model"], "INTEL_SSDSC2BB15");
        // The recording has no SIZE, ROTA or TRAN column: null, and no kind.
        assert_eq!(disks[0]["size_bytes"], Value::Null);
        assert_eq!(disks[0]["kind"], Value::Null);
    }

    #[test]
    fn this_vm_pairs_dialect_real_output() {
        assert_eq!(
            parse_lsblk(include_str!("../fixtures/firecracker-vm/lsblk-P.txt")).expect("parses"),
            parse_lsblk(include_str!("../fixtures/firecracker-vm/lsblk.json")).expect("parses")
        );
        let disks =
            parse_lsblk(include_str!("../fixtures/firecracker-vm/lsblk-P.txt")).expect("parses");
        assert_eq!(disks.len(), 1);
        assert_eq!(disks[0].name, "vda");
        assert_eq!(disks[0].size_bytes, Some(274_877_906_944));
        assert_eq!(disks[0].rotational, Some(true));
    }

    #[test]
    fn pairs_dialect_of_old_lsblk() {
        let out = "NAME=\"sda\" SIZE=\"500107862016\" MODEL=\"ST500DM002-1BD14\" SERIAL=\"Z3TX1ABC\" ROTA=\"1\" TYPE=\"disk\" TRAN=\"sata\"\nNAME=\"sr0\" SIZE=\"1073741312\" MODEL=\"DVD\\x20RW\" SERIAL=\"\" ROTA=\"1\" TYPE=\"rom\" TRAN=\"sata\"\n";
        let disks = parse_lsblk(out).expect("parses");
        assert_eq!(disks.len(), 1);
        assert_eq!(disks[0].kind, Some("hdd"));
        assert_eq!(unescape("DVD\\x20RW"), "DVD RW");
    }

    /// An lsblk without JSON (util-linux before 2.27) fails the first command; the second gives
    /// the pairs. A modern lsblk is never asked the second.
    #[test]
    fn an_lsblk_without_json_is_asked_the_pairs_after() {
        let pairs = "NAME=\"sda\" SIZE=\"500107862016\" MODEL=\"ST500DM002-1BD14\" \
                     SERIAL=\"Z2AAX1\" ROTA=\"1\" TYPE=\"disk\" TRAN=\"sata\" REV=\"KC45\" WWN=\"\"\n";
        let data = FixtureExecutor::new("centos7")
            .command_output(PRIMARY, "", "lsblk: invalid option -- 'J'\n", Some(1))
            .command(FALLBACK, pairs)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        let d = disks(&data);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["id"], "Z2AAX1");
        assert_eq!(d[0]["kind"], "hdd");
        // Without an answer to FALLBACK the modern path must not need one.
        let data = FixtureExecutor::new("modern")
            .command(PRIMARY, "{\"blockdevices\": []}")
            .with_target(|t| collect(t, &json!({})));
        assert!(data.is_ok(), "{data:?}");
    }

    #[test]
    fn lsblk_failure_is_an_error() {
        let err = FixtureExecutor::new("t")
            .with_target(|t| collect(t, &json!({})))
            .expect_err("no lsblk");
        assert_eq!(err.kind, "command_failed");
        let err = run("{\"blockdevices\": 3}").expect_err("bad json");
        assert_eq!(err.kind, "parse");
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-disk -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_command(PRIMARY)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        plugin_api::data::validate(&data, &Default::default()).expect("valid");
        // The same disks as /sys/block shows, less the ones the rules leave out.
        let mut expected: Vec<String> = std::fs::read_dir("/sys/block")
            .expect("/sys/block")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !NOT_DISKS.iter().any(|p| n.starts_with(p)))
            .collect();
        expected.sort();
        let mut names: Vec<String> = disks(&data)
            .iter()
            .filter_map(|d| d["name"].as_str().map(String::from))
            .collect();
        names.sort();
        assert_eq!(names, expected);
        for d in disks(&data) {
            let name = d["name"].as_str().expect("name");
            let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
                .expect("size")
                .trim()
                .parse()
                .expect("a number");
            assert_eq!(d["size_bytes"].as_u64(), Some(sectors * 512), "{name}");
            assert_eq!(d["media_present"], sectors > 0, "{name}");
            // Parity with sysfs for firmware and WWN where the kernel exports them.
            let sys = |f: &str| {
                std::fs::read_to_string(format!("/sys/block/{name}/{f}"))
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            };
            if let Some(rev) = sys("device/rev").or_else(|| sys("device/firmware_rev")) {
                assert_eq!(d["firmware"], rev.as_str(), "{name}");
            }
            if let Some(wwid) = sys("device/wwid").or_else(|| sys("wwid")) {
                println!("{name}: sysfs wwid {wwid}, lsblk wwn {}", d["wwn"]);
            }
        }
    }
}
