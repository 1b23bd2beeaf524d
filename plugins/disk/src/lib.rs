//! The `disk` collector: the whole physical disks of the target.
//!
//! One command on the target, [`SYSFS`]: a shell script of builtins only (no process is started
//! on the target; over SSH it runs inside the batch's own shell) that prints each block device's
//! sysfs attributes and the properties of udev's database (`/run/udev/data/bMAJ:MIN`) that lsblk
//! reads. [`parse_sysfs`] turns them into what `lsblk -J -b -d -o
//! NAME,SIZE,MODEL,SERIAL,ROTA,TYPE,TRAN,REV,WWN` of util-linux 2.38 prints (Debian 12's), by
//! lsblk's own rules (misc-utils/lsblk.c `device_get_data`, `get_type`, `get_transport`, and
//! lsblk-properties.c `get_properties_by_udev`):
//! - devices: every `/sys/block` entry but hidden ones (`hidden` 1: NVMe multipath paths) and
//!   those with slaves (dm, md, bcache: not roots of lsblk's tree); TYPE from the SCSI
//!   peripheral type in `device/type` (none: `disk`);
//! - SERIAL: udev's `SCSI_IDENT_SERIAL`, `ID_SCSI_SERIAL`, `ID_SERIAL_SHORT`, `ID_SERIAL` (the
//!   first present and not empty, blanks squeezed), else sysfs `device/serial` (2.37 to 2.40).
//!   Older lsblk took fewer keys ([`SERIAL_RULES`]: 2.27–2.28 `ID_SERIAL_SHORT` only, 2.29–2.33
//!   also sysfs's, 2.34–2.35 `ID_SCSI_SERIAL` first, 2.36 `ID_SERIAL` last), and a disk's serial
//!   is its id: where those rules disagree for a disk (a SAS disk's unit serial against its NAA
//!   id, a disk with no udev data but a sysfs serial), the target's own lsblk is asked, as before
//!   this collector read sysfs, and its answer is the collector's; only where they all agree is
//!   no lsblk started. An lsblk older than 2.27 (RHEL 7's 2.23) printed no serial: such a host's
//!   disks gain their serials, and their ids change once from name to serial;
//! - MODEL: udev's `ID_MODEL_ENC` (`\xNN` undone), `ID_MODEL`, else `device/model`; REV
//!   `device/rev` (2.39 and later take udev's `ID_REVISION` first); WWN udev's
//!   `ID_WWN_WITH_EXTENSION`, else `ID_WWN`; ROTA `queue/rotational`; SIZE `size` × 512;
//! - TRAN: the SCSI host's class (`spi`, `fc`/`fcoe`, `sas`, `iscsi`), `sbp`, `usb` in the SCSI
//!   device's path, `sata`/`ata` by the host's driver, `nvme` by name (2.39 and later also say
//!   `virtio` and `mmc` by name).
//!
//! The tests hold it to the installed lsblk on this machine, on util-linux's recorded sysfs dumps
//! and on generated trees (`lsblk --sysroot`). Without the udev database (a container, a host
//! without udev) both give sysfs's values only. Only where the target has no `/sys/block` (exit
//! code 3) is lsblk asked: [`LSBLK`], and where that fails [`FALLBACK`] (over SSH one more round
//! trip each, for odd hosts only): `lsblk -P ...` (key="value" pairs) where lsblk is older than
//! util-linux 2.27 and has no JSON (CentOS 7 has 2.23), then in the same shell line `lsblk -P -b
//! -d -o NAME,SIZE,MODEL,ROTA,TYPE` where lsblk knows none of SERIAL, TRAN, REV, WWN (before
//! 2.23: TRAN and REV came in 2.23, WWN in 2.22). Both JSON dialects are read: numbers and
//! booleans as JSON numbers and `true`/`false` (current util-linux) or as strings `"0"`/`"1"`
//! (older releases, e.g. 2.31 on Ubuntu 18.04).
//!
//! Which devices count as disks: `TYPE` `disk` only (no partitions, LVM, device-mapper,
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

/// The command this collector runs: every block device's sysfs attributes and its udev
/// properties, read with shell builtins only (no process is started on the target). `R` is the
/// root the files are read under: empty on a host, a copied tree in the tests. Exit code 3 where
/// there is no `/sys/block` (then [`LSBLK`] is asked).
///
/// Per device: `@ NAME`, then one line `FILE VALUE` for each attribute file that is readable
/// (the first line of the file, as it is), `slaves` where it has any, for a SCSI device its
/// `hctl`, the `host` classes its SCSI host is in, the host's `fc/symbolic_name` and
/// `scsi/proc_name`, `has sas_device` / `has ieee1394_id`, and its `scsi` device path (for
/// `usb`). After the devices, the lines of udev's database (`/run/udev/data/bMAJ:MIN`) that lsblk
/// reads, as `bMAJ:MIN:E:KEY=value`: with `read` for up to four devices, with one `grep -H` for
/// more (dash's `read` takes a byte a system call: ~0.3 ms for a 1.4 KB file; a `grep` costs a
/// process start, ~1.5 ms, whatever the count). Exit code 4 where that database cannot be read
/// (`/run/udev/data` gone between the listing and the read, `grep` failing; then lsblk is asked).
/// A database file that exists but this user may not read is `udev-unreadable` in its device's
/// lines (lsblk run by the same user reads sysfs's values then too; the collector says so). Every
/// read resets its variable first: a failed `read` leaves bash's unchanged. Under bash, `failglob`
/// and `nullglob` (a startup file's) are turned off. Devices that are never disks by name (loop,
/// ram, zram, dm-, md, ...) are skipped here already.
pub const SYSFS: &str = r#"R=; u=; [ -z "$BASH_VERSION" ] || shopt -u failglob nullglob
cd "$R/sys/block" 2>/dev/null || { echo "no $R/sys/block" >&2; exit 3; }
for n in *; do case $n in loop*|ram*|zram*|nbd*|rbd*|drbd*|dm-*|md*|fd*|sr*) continue;; esac
b=$R/sys/block/$n; [ -r "$b/dev" ] || continue; printf '@ %s\n' "$n"
for f in dev size hidden queue/rotational device/type device/model device/serial device/rev; do
if [ -r "$b/$f" ] && { v=; IFS= read -r v < "$b/$f" || [ -n "$v" ]; }; then printf '%s %s\n' "$f" "$v"; fi; done
set -- "$b"/slaves/*; if [ -e "$1" ] || [ -L "$1" ]; then echo slaves; fi
if cd -P "$b/device" 2>/dev/null; then c=${PWD##*/}; case $c in *:*:*:*) h=host${c%%:*}; printf 'hctl %s\n' "$c"
for t in spi fc sas iscsi scsi; do if [ -d "$R/sys/class/${t}_host/$h" ]; then printf 'host %s\n' "$t"; fi; done
for t in fc/symbolic_name scsi/proc_name; do f=$R/sys/class/${t%/*}_host/$h/${t#*/}
if [ -r "$f" ] && { v=; IFS= read -r v < "$f" || [ -n "$v" ]; }; then printf '%s %s\n' "$t" "$v"; fi; done
for t in sas_device ieee1394_id; do if [ -e "$R/sys/bus/scsi/devices/$c/$t" ]; then printf 'has %s\n' "$t"; fi; done
if cd -P "$R/sys/bus/scsi/devices/$c" 2>/dev/null; then printf 'scsi %s\n' "${PWD#"$R"}"; fi;; esac; fi
v=; IFS= read -r v < "$b/dev"; f=$R/run/udev/data/b$v
if [ -n "$v" ] && [ -r "$f" ]; then u="$u b$v"; elif [ -n "$v" ] && [ -e "$f" ]; then echo udev-unreadable; fi
done
if [ -z "$u" ]; then exit 0; fi; cd "$R/run/udev/data" || exit 4; set -- $u
if [ $# -gt 4 ]; then grep -H -E '^E:(ID_SERIAL|ID_SERIAL_SHORT|ID_SCSI_SERIAL|SCSI_IDENT_SERIAL|ID_WWN|ID_WWN_WITH_EXTENSION|ID_MODEL|ID_MODEL_ENC)=' "$@" || [ $? = 1 ] || exit 4; exit 0; fi
for f in "$@"; do while l=; IFS= read -r l || [ -n "$l" ]; do case $l in E:ID_SERIAL=*|E:ID_SERIAL_SHORT=*|E:ID_SCSI_SERIAL=*|E:SCSI_IDENT_SERIAL=*|E:ID_WWN=*|E:ID_WWN_WITH_EXTENSION=*|E:ID_MODEL=*|E:ID_MODEL_ENC=*) printf '%s:%s\n' "$f" "$l";; esac; done < "$f"; done"#;

/// Asked only where [`SYSFS`] failed (no `/sys/block`): lsblk's JSON.
pub const LSBLK: &str = "lsblk -J -b -d -o NAME,SIZE,MODEL,SERIAL,ROTA,TYPE,TRAN,REV,WWN";

/// Asked only when [`LSBLK`] failed too: an lsblk without JSON, or without the newer columns.
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

/// One device as [`SYSFS`] printed it: its attribute files, its SCSI facts and its udev properties.
#[derive(Debug, Default)]
struct Sysfs<'a> {
    name: &'a str,
    files: Vec<(&'a str, &'a str)>,
    udev: Vec<(&'a str, &'a str)>,
    slaves: bool,
    udev_unreadable: bool,
    hosts: Vec<&'a str>,
    has: Vec<&'a str>,
    scsi_path: Option<&'a str>,
}

impl<'a> Sysfs<'a> {
    fn file(&self, name: &str) -> Option<&'a str> {
        self.files.iter().find(|(f, _)| *f == name).map(|(_, v)| *v)
    }

    fn udev(&self, key: &str) -> Option<&'a str> {
        self.udev.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// lsblk's TYPE of a device that is not a partition, dm, loop or md: the SCSI peripheral type
    /// in `device/type` by name, `disk` where there is none (util-linux lib/blkdev.c
    /// `blkdev_scsi_type_to_name`).
    fn is_disk(&self) -> bool {
        let code = self.file("device/type").and_then(leading_int);
        !matches!(code, Some(1..=9 | 0xc..=0xe | 0x11 | 0x7f))
    }

    /// lsblk 2.38's TRAN (misc-utils/lsblk.c `get_transport`): the SCSI host's class first,
    /// then a USB path, the host's driver, and an NVMe name last.
    fn transport(&self) -> Option<String> {
        let host = |class: &str| self.hosts.contains(&class);
        let t = if host("spi") {
            "spi"
        } else if host("fc") {
            let name = self.file("fc/symbolic_name").filter(|s| !s.is_empty())?;
            if name.contains(" over ") {
                "fcoe"
            } else {
                "fc"
            }
        } else if host("sas") || self.has.contains(&"sas_device") {
            "sas"
        } else if self.has.contains(&"ieee1394_id") {
            "sbp"
        } else if host("iscsi") {
            "iscsi"
        } else if self.scsi_path.is_some_and(|p| p.contains("usb")) {
            "usb"
        } else if host("scsi") {
            let driver = self.file("scsi/proc_name").filter(|s| !s.is_empty())?;
            if driver.starts_with("ahci") || driver.starts_with("sata") {
                "sata"
            } else if driver.contains("ata") {
                "ata"
            } else {
                return None;
            }
        } else if self.name.starts_with("nvme") {
            "nvme"
        } else {
            return None;
        };
        Some(t.to_string())
    }

    /// The disk lsblk 2.38 shows for this device (`-b -d`, the columns of [`LSBLK`]), or `None`
    /// where it shows none or not a disk.
    fn disk(&self) -> Option<Disk> {
        // A device with slaves (dm, md, bcache) is no root of lsblk's tree: `-d` shows none.
        if self.slaves
            || self.file("hidden").and_then(leading_int).unwrap_or(0) != 0
            || !self.is_disk()
        {
            return None;
        }
        // lsblk's `mk_name`: sysfs writes a `/` of a device name as `!` (`cciss!c0d0`)
        let name = self.name.replace('!', "/");
        let size_bytes = Some(
            self.file("size")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map_or(0, |sectors| sectors.saturating_mul(512)),
        );
        // libsmartcols prints a boolean column without data as `false`
        let rotational = Some(
            self.file("queue/rotational")
                .is_some_and(|r| !(r.is_empty() || r.starts_with(['0', 'N', 'n']))),
        );
        // Model and serial: udev's first.
        let model = if let Some(enc) = self.udev("ID_MODEL_ENC") {
            // udev's `\xNN` undone as util-linux's `unhexmangle_string` does
            Some(normalize_whitespace(&unescape(enc)))
        } else if let Some(model) = self.udev("ID_MODEL") {
            Some(normalize_whitespace(model))
        } else {
            self.file("device/model").map(str::to_string)
        };
        let serial = self.serial_by(SERIAL_RULES[SERIAL_RULES.len() - 1]);
        let firmware = self.file("device/rev").map(str::to_string);
        let wwn = self
            .udev("ID_WWN_WITH_EXTENSION")
            .or_else(|| self.udev("ID_WWN"))
            .map(str::to_string);
        let nonempty =
            |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let (model, transport) = (nonempty(model), self.transport());
        Some(Disk {
            kind: kind(&name, model.as_deref(), transport.as_deref(), rotational),
            name,
            size_bytes,
            model,
            serial,
            rotational,
            transport,
            firmware: nonempty(firmware),
            wwn: nonempty(wwn),
        })
    }

    /// The serial by one of lsblk's rules: udev's keys in order, then sysfs's `device/serial` where
    /// the rule has it.
    fn serial_by(&self, (keys, sysfs): SerialRule) -> Option<String> {
        keys.iter()
            .find_map(|k| self.udev(k))
            .map(normalize_whitespace)
            .or_else(|| {
                sysfs
                    .then(|| self.file("device/serial"))
                    .flatten()
                    .map(str::to_string)
            })
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Whether every lsblk since util-linux 2.27 (the first with JSON) gives this disk the same
    /// serial: where they differ, the serial the host's own lsblk gave so far is its id in the
    /// CMDB, and only that lsblk can say which it is.
    fn serial_is_settled(&self) -> bool {
        let last = self.serial_by(SERIAL_RULES[SERIAL_RULES.len() - 1]);
        SERIAL_RULES
            .iter()
            .all(|&rule| self.serial_by(rule) == last)
    }
}

/// udev's keys in order, and whether sysfs's `device/serial` is taken after them.
pub type SerialRule = (&'static [&'static str], bool);

/// lsblk's SERIAL across util-linux's history (misc-utils/lsblk.c, lsblk-properties.c), oldest
/// first: 2.27–2.28, 2.29–2.33, 2.34–2.35, 2.36, 2.37 to 2.40 (the one [`SYSFS`] follows).
pub const SERIAL_RULES: [SerialRule; 5] = [
    (&["ID_SERIAL_SHORT"], false),
    (&["ID_SERIAL_SHORT"], true),
    (&["ID_SCSI_SERIAL", "ID_SERIAL_SHORT"], true),
    (&["ID_SCSI_SERIAL", "ID_SERIAL_SHORT", "ID_SERIAL"], true),
    (
        &[
            "SCSI_IDENT_SERIAL",
            "ID_SCSI_SERIAL",
            "ID_SERIAL_SHORT",
            "ID_SERIAL",
        ],
        true,
    ),
];

/// `fscanf("%d")` of a sysfs file: the leading integer.
fn leading_int(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    s[..end].parse().ok()
}

/// util-linux's `normalize_whitespace`: no blanks at either end, each run of blanks inside
/// kept as its first.
fn normalize_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = false;
    for c in s
        .trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b')
        .chars()
    {
        let is_blank = c.is_ascii_whitespace() || c == '\x0b';
        if !(is_blank && blank) {
            out.push(c);
        }
        blank = is_blank;
    }
    out
}

/// A line of udev's database as [`SYSFS`] prints it (`grep -H`'s shape: `bMAJ:MIN:E:KEY=VALUE`):
/// the device number and `KEY=VALUE`.
fn udev_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('b')?;
    let (dev, prop) = rest.split_once(":E:")?;
    let (major, minor) = dev.split_once(':')?;
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (number(major) && number(minor)).then_some((dev, prop))
}

/// What [`SYSFS`]'s output says.
#[derive(Debug, Default)]
pub struct FromSysfs {
    /// The whole physical disks, by lsblk 2.38's rules, in name order.
    pub disks: Vec<Disk>,
    /// The disks whose serial lsblk's versions disagree on (see [`SERIAL_RULES`]).
    pub unsettled: Vec<String>,
    /// The disks whose udev data exists but this user may not read.
    pub udev_unreadable: Vec<String>,
}

/// Reads [`SYSFS`]'s output.
pub fn read_sysfs(stdout: &str) -> FromSysfs {
    let mut devices: Vec<Sysfs<'_>> = Vec::new();
    let mut udev: Vec<(&str, &str, &str)> = Vec::new();
    for line in stdout.lines() {
        if let Some((dev, prop)) = udev_line(line) {
            if let Some((k, v)) = prop.split_once('=') {
                udev.push((dev, k, v));
            }
            continue;
        }
        if let Some(name) = line.strip_prefix("@ ") {
            devices.push(Sysfs {
                name,
                ..Sysfs::default()
            });
            continue;
        }
        let Some(d) = devices.last_mut() else {
            continue;
        };
        if line == "slaves" {
            d.slaves = true;
        } else if line == "udev-unreadable" {
            d.udev_unreadable = true;
        } else if let Some((key, value)) = line.split_once(' ') {
            match key {
                "hctl" => {}
                "host" => d.hosts.push(value),
                "has" => d.has.push(value),
                "scsi" => d.scsi_path = Some(value),
                _ => d.files.push((key, value)),
            }
        }
    }
    for d in &mut devices {
        let Some(dev) = d.file("dev") else { continue };
        for &(_, k, v) in udev.iter().filter(|(of, _, _)| *of == dev) {
            // a key twice in one file: libudev keeps the last
            // libudev drops a property whose value is empty (`E:KEY=`): the next key answers
            d.udev.retain(|(key, _)| *key != k);
            if !v.is_empty() {
                d.udev.push((k, v));
            }
        }
    }
    let mut out = FromSysfs::default();
    for d in devices
        .iter()
        .filter(|d| !NOT_DISKS.iter().any(|p| d.name.starts_with(p)))
    {
        if let Some(disk) = d.disk() {
            if !d.serial_is_settled() {
                out.unsettled.push(disk.name.clone());
            }
            if d.udev_unreadable {
                out.udev_unreadable.push(disk.name.clone());
            }
            out.disks.push(disk);
        }
    }
    out
}

/// The whole physical disks of [`SYSFS`]'s output, by lsblk 2.38's rules, in name order.
pub fn parse_sysfs(stdout: &str) -> Vec<Disk> {
    read_sysfs(stdout).disks
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

/// Collects the disks of `target` with one command ([`SYSFS`]); lsblk only where that fails (no
/// `/sys/block`, an unreadable udev database).
pub fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
    let sysfs = target.run(SYSFS, TIMEOUT)?;
    let mut data = Data::new();
    let from_sysfs = sysfs.success().then(|| read_sysfs(&sysfs.stdout));
    let sysfs_disks = |f: FromSysfs, data: &mut Data| {
        for name in &f.udev_unreadable {
            data.reason(
                &format!("{name}.serial"),
                "udev's database of this disk is not readable by this user: serial and model \
                 from sysfs",
            );
        }
        f.disks
    };
    let disks = match from_sysfs {
        Some(f) if f.unsettled.is_empty() => sysfs_disks(f, &mut data),
        // The host's own lsblk, as before: the only one that knows which serial it gave so far.
        from_sysfs => match from_lsblk(target, &mut data) {
            Ok(disks) => disks,
            Err(e) => {
                let Some(f) = from_sysfs else { return Err(e) };
                data.reason("disks", format!("serials by util-linux 2.38's rule: {e}"));
                sysfs_disks(f, &mut data)
            }
        },
    };
    if disks.is_empty() {
        data.reason(
            "disks",
            "no whole disk in /sys/block (a container, or only network storage)",
        );
    }
    for d in &disks {
        if d.serial.is_none() && !data.reasons().contains_key(&format!("{}.serial", d.name)) {
            data.reason(
                &format!("{}.serial", d.name),
                "the disk shows no serial (virtio without one, or udev data missing)",
            );
        }
    }
    let list = data.list("disks", &["serial", "name"]);
    for (d, id) in disks.iter().zip(ids(&disks)) {
        list.part(id, d.to_json());
    }
    data.build()
}

/// The disks as the target's lsblk prints them ([`LSBLK`], else [`FALLBACK`]), with a reason for
/// each column it lacks.
fn from_lsblk(target: &Target<'_>, data: &mut Data) -> Result<Vec<Disk>, CollectError> {
    let primary = target.run(LSBLK, TIMEOUT)?;
    let stdout = if primary.success() {
        primary.stdout
    } else {
        target.run_ok(FALLBACK, TIMEOUT)?
    };
    let disks = parse_lsblk(&stdout)?;
    for (field, column) in missing_columns(&stdout)? {
        data.reason(
            field,
            format!(
                "lsblk printed no {} column (util-linux before 2.23 lacks it)",
                column.to_ascii_uppercase()
            ),
        );
    }
    Ok(disks)
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
        "whole physical disks: size, model, serial, kind, transport, firmware, WWN (sysfs, udev)",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::testing::FixtureExecutor;

    use super::*;

    fn run(stdout: &str) -> Result<Value, CollectError> {
        FixtureExecutor::new("t")
            .command(LSBLK, stdout)
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
            .command_output(LSBLK, "", "lsblk: invalid option -- 'J'\n", Some(1))
            .command(FALLBACK, pairs)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        let d = disks(&data);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["id"], "Z2AAX1");
        assert_eq!(d[0]["kind"], "hdd");
        // Without an answer to FALLBACK the modern path must not need one.
        let data = FixtureExecutor::new("modern")
            .command(LSBLK, "{\"blockdevices\": []}")
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
            .record_command(SYSFS)
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

    // The sysfs reading against lsblk itself (util-linux 2.38.1 on the project's machines and
    // in CI): on this machine, on util-linux's own recorded sysfs dumps, and on generated trees
    // with every rule's inputs. Both are run for real: the script by /bin/sh, lsblk with
    // `--sysroot` on the same tree.

    /// [`SYSFS`] run by `/bin/sh` with its files read under `root` (`""`: this machine).
    fn sysfs_under(root: &str) -> String {
        sysfs_by(&["/bin/sh"], root)
    }

    /// [`SYSFS`] run by `shell` (a program and its options) with its files read under `root`.
    fn sysfs_by(shell: &[&str], root: &str) -> String {
        let script = SYSFS.replacen("R=;", &format!("R='{root}';"), 1);
        assert_ne!(script, SYSFS, "the script starts with its root");
        let out = std::process::Command::new(shell[0])
            .args(&shell[1..])
            .args(["-c", &script])
            .output()
            .expect("the shell runs");
        assert!(
            out.status.success(),
            "{shell:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// The installed lsblk's disks, on this machine or (`--sysroot`) on a tree.
    fn lsblk_disks(root: Option<&std::path::Path>) -> Vec<Disk> {
        let mut cmd = std::process::Command::new("lsblk");
        if let Some(root) = root {
            cmd.arg("--sysroot").arg(root);
        }
        let out = cmd
            .args(LSBLK.split_whitespace().skip(1))
            .output()
            .expect("lsblk (util-linux) is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut disks = parse_lsblk(&String::from_utf8_lossy(&out.stdout)).expect("parses");
        disks.sort_by(|a, b| a.name.cmp(&b.name));
        disks
    }

    #[test]
    fn sysfs_gives_this_machines_disks_as_lsblk_does() {
        let ours = parse_sysfs(&sysfs_under(""));
        assert!(!ours.is_empty(), "this machine has a disk");
        assert_eq!(ours, lsblk_disks(None));
    }

    /// util-linux's own dumps (tests/ts/lsblk/dumps): real machines' sysfs, and for one of them
    /// the udev properties, as `lsblk --sysroot` reads them (`dev/NAME`, `KEY=value`). lsblk
    /// takes from that file the first line of a field's keys; the same property is written to
    /// udev's database for the script (`run/udev/data/bMAJ:MIN`, `E:KEY=value`).
    #[test]
    fn sysfs_gives_util_linux_dumps_disks_as_lsblk_does() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/util-linux-dumps");
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut seen = 0;
        for dump in ["multi-devs-bcachefs", "simple-lvm", "simple-nvme"] {
            let st = std::process::Command::new("tar")
                .arg("-C")
                .arg(tmp.path())
                .arg("-xJf")
                .arg(dir.join(format!("{dump}.tar.xz")))
                .status()
                .expect("tar");
            assert!(st.success());
            let root = tmp.path().join(dump);
            if let Ok(entries) = std::fs::read_dir(root.join("dev")) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let Ok(dev) =
                        std::fs::read_to_string(root.join(format!("sys/block/{name}/dev")))
                    else {
                        continue;
                    };
                    let props = std::fs::read_to_string(e.path()).expect("props");
                    let mut db = String::new();
                    for keys in [
                        &[
                            "SCSI_IDENT_SERIAL",
                            "ID_SCSI_SERIAL",
                            "ID_SERIAL_SHORT",
                            "ID_SERIAL",
                        ][..],
                        &["ID_WWN_WITH_EXTENSION", "ID_WWN"],
                        &["ID_MODEL"],
                    ] {
                        let first = props.lines().find(|l| {
                            l.split_once('=')
                                .is_some_and(|(k, v)| keys.contains(&k) && !v.is_empty())
                        });
                        if let Some(line) = first {
                            db.push_str(&format!("E:{line}\n"));
                        }
                    }
                    std::fs::create_dir_all(root.join("run/udev/data")).expect("mkdir");
                    std::fs::write(root.join(format!("run/udev/data/b{}", dev.trim())), db)
                        .expect("write");
                }
            }
            let ours = parse_sysfs(&sysfs_under(root.to_str().expect("UTF-8 path")));
            assert_eq!(ours, lsblk_disks(Some(&root)), "{dump}");
            seen += ours.len();
            if dump == "multi-devs-bcachefs" {
                let names: Vec<_> = ours.iter().map(|d| d.name.as_str()).collect();
                assert_eq!(names, ["nvme0n1", "sda", "sdb", "sdc"], "sr0 is a rom");
                assert_eq!(
                    ours[0].wwn.as_deref(),
                    Some("eui.00000000000000000026b7283b12b315")
                );
                assert_eq!(ours[0].transport.as_deref(), Some("nvme"));
                assert_eq!(
                    ours[1].serial.as_deref(),
                    Some("KINGSTON_SH103S3240G_50026B724B09A1FF")
                );
            }
        }
        assert_eq!(seen, 4 + 3 + 3);
    }

    /// A small deterministic generator (xorshift) for the generated trees.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn one<'a>(&mut self, of: &[&'a str]) -> &'a str {
            of[self.below(of.len())]
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    fn write(path: &std::path::Path, content: &str) {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    fn link(target: &std::path::Path, at: &std::path::Path) {
        std::fs::create_dir_all(at.parent().expect("a parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, at).expect("symlink");
    }

    /// One generated tree: SCSI disks behind hosts of every class (some on USB), NVMe, virtio,
    /// Xen, MMC and a bcache device with slaves; hidden devices, SCSI types other than disk,
    /// empty and missing attribute files, sizes of zero, and udev properties of every key, in
    /// priority order for lsblk's file and shuffled among other lines in udev's database.
    fn generate(root: &std::path::Path, rng: &mut Rng, small: bool) -> u32 {
        let values = [
            "WD-WX31A",
            "  S3Z9NB0K  ",
            "Samsung SSD 860",
            "QEMU HARDDISK",
            "",
            "a  b\tc",
        ];
        let sys = root.join("sys");
        for h in 0..6 {
            let host = |class: &str| sys.join(format!("class/{class}_host/host{h}"));
            if rng.chance(85) {
                let driver = rng.one(&[
                    "ahci",
                    "sata_nv",
                    "ata_piix",
                    "pata_via",
                    "mpt3sas",
                    "virtio_scsi",
                    "hv_storvsc",
                    "",
                ]);
                write(&host("scsi").join("proc_name"), &format!("{driver}\n"));
            }
            match rng.below(6) {
                0 => std::fs::create_dir_all(host("spi")).expect("mkdir"),
                1 => write(
                    &host("fc").join("symbolic_name"),
                    rng.one(&["QLE2562 FW:v8.07 DVR:v10.02\n", "fcoe v0.1 over eth2\n", ""]),
                ),
                2 => std::fs::create_dir_all(host("sas")).expect("mkdir"),
                3 => std::fs::create_dir_all(host("iscsi")).expect("mkdir"),
                _ => {}
            }
        }
        let count = if small {
            1 + rng.below(4)
        } else {
            5 + rng.below(12)
        } as u32;
        for i in 0..count {
            let letter = char::from(b'a' + i as u8);
            let (name, dir) = match rng.below(8) {
                0..=2 => {
                    let h = rng.below(6);
                    let hctl = format!("{h}:0:{i}:0");
                    let usb = if rng.chance(20) {
                        "usb2/2-1/2-1:1.0/"
                    } else {
                        ""
                    };
                    let dev = sys.join(format!(
                        "devices/pci0000:00/0000:00:1f.2/{usb}host{h}/target{h}:0:{i}/{hctl}"
                    ));
                    link(&dev, &sys.join(format!("bus/scsi/devices/{hctl}")));
                    if rng.chance(15) {
                        write(&dev.join(rng.one(&["sas_device/x", "ieee1394_id"])), "1\n");
                    }
                    (format!("sd{letter}"), dev)
                }
                3 => (
                    format!("nvme{i}n1"),
                    sys.join(format!("devices/pci0000:00/0000:00:0{i:x}.0/nvme/nvme{i}")),
                ),
                4 => (
                    format!("vd{letter}"),
                    sys.join(format!("devices/pci0000:00/virtio{i}")),
                ),
                5 => (format!("xvd{letter}"), sys.join(format!("devices/vbd-{i}"))),
                // sysfs's `!` for the `/` of a device name
                6 => (
                    format!("cciss!c0d{i}"),
                    sys.join(format!("devices/pci0000:00/0000:00:0{i:x}.0/cciss{i}")),
                ),
                _ => (
                    format!("mmcblk{i}"),
                    sys.join(format!("devices/mmc_host/mmc0/mmc0:{i:04}")),
                ),
            };
            let (name, block) = if rng.chance(8) {
                (
                    format!("bcache{i}"),
                    sys.join(format!("devices/virtual/block/bcache{i}")),
                )
            } else {
                let block = dir.join("block").join(&name);
                link(&dir, &block.join("device"));
                for (file, all) in [
                    ("type", &["0", "5", "1", "14", "0x1f", "SD"][..]),
                    ("model", &values),
                    ("serial", &values),
                    ("rev", &["1.0    ", "XCV10110", ""]),
                ] {
                    if rng.chance(70) {
                        write(&dir.join(file), &format!("{}\n", rng.one(all)));
                    }
                }
                (name, block)
            };
            if name.starts_with("bcache") || rng.chance(5) {
                link(&sys.join("block/sdz"), &block.join("slaves/sdz"));
            }
            let devno = format!("{}:{}", 8 + i / 16, (i % 16) * 16);
            write(&block.join("dev"), &format!("{devno}\n"));
            let size = rng.one(&["0", "2048", "937703088", "7814037168"]);
            write(&block.join("size"), &format!("{size}\n"));
            if rng.chance(90) {
                write(&block.join("queue/rotational"), rng.one(&["0\n", "1\n"]));
            }
            if rng.chance(30) {
                write(&block.join("hidden"), rng.one(&["0\n", "1\n"]));
            }
            link(&block, &sys.join(format!("block/{name}")));
            link(&block, &sys.join(format!("dev/block/{devno}")));
            // udev: lsblk's file takes a field's first line, so the keys go in priority order.
            let mut props = Vec::new();
            for key in [
                "ID_MODEL",
                "ID_WWN_WITH_EXTENSION",
                "ID_WWN",
                "SCSI_IDENT_SERIAL",
                "ID_SCSI_SERIAL",
                "ID_SERIAL_SHORT",
                "ID_SERIAL",
            ] {
                if rng.chance(35) {
                    // an empty value is no value to libudev (and to lsblk's file): the next key
                    let value = match rng.below(8) {
                        0 => String::new(),
                        1 => format!("  {key} {}  ", rng.below(1000)),
                        _ => format!("{key}-{}", rng.below(1000)),
                    };
                    props.push(format!("{key}={value}"));
                }
            }
            let mut db: Vec<String> = props.iter().map(|p| format!("E:{p}")).collect();
            db.extend([
                "S:disk/by-id/x".to_string(),
                "E:ID_BUS=ata".to_string(),
                "E:ID_MODEL_X=1".to_string(),
            ]);
            for k in (1..db.len()).rev() {
                db.swap(k, rng.below(k + 1));
            }
            write(
                &root.join(format!("dev/{}", name.replace('!', "/"))),
                &(props.join("\n") + "\n"),
            );
            write(
                &root.join(format!("run/udev/data/b{devno}")),
                &db.join("\n"),
            );
        }
        count
    }

    #[test]
    fn sysfs_gives_generated_trees_disks_as_lsblk_does() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut disks, mut transports, mut serials) = (0, std::collections::BTreeSet::new(), 0);
        let mut by_grep = [0; 2];
        for t in 0..64 {
            let root = tmp.path().join(format!("t{t}"));
            // more than four devices with udev data: one grep; up to four: shell reads
            let count = generate(&root, &mut rng, t % 2 == 0);
            by_grep[usize::from(count > 4)] += 1;
            let ours = parse_sysfs(&sysfs_under(root.to_str().expect("UTF-8 path")));
            let theirs = lsblk_disks(Some(&root));
            assert_eq!(ours, theirs, "tree {t}: {}", root.display());
            disks += ours.len();
            serials += ours.iter().filter(|d| d.serial.is_some()).count();
            transports.extend(ours.iter().map(|d| d.transport.clone()));
        }
        // The trees reached every rule: both ways of reading udev's data, each transport, disks
        // with and without a serial.
        assert!(by_grep[0] >= 4 && by_grep[1] >= 4, "{by_grep:?}");
        assert!(disks > 100, "{disks} disks");
        assert!(serials > 30 && serials < disks, "{serials} serials");
        let all: std::collections::BTreeSet<_> = [
            None,
            Some("ata"),
            Some("fc"),
            Some("fcoe"),
            Some("iscsi"),
            Some("nvme"),
            Some("sas"),
            Some("sata"),
            Some("sbp"),
            Some("spi"),
            Some("usb"),
        ]
        .into_iter()
        .map(|t| t.map(String::from))
        .collect();
        assert_eq!(transports, all);
    }

    #[test]
    fn udev_properties_by_lsblks_priority_and_encoding() {
        // The udev database of a SATA SSD (systemd's ata_id and scsi_id keys, synthetic values):
        // SCSI_IDENT_SERIAL before ID_SCSI_SERIAL before ID_SERIAL_SHORT before ID_SERIAL, the
        // model from ID_MODEL_ENC with its \x20 undone and blanks squeezed, the WWN with its
        // extension first; sysfs's own values are not used where udev has one.
        let out = "@ sda\ndev 8:0\nsize 937703088\nqueue/rotational 0\ndevice/type 0\n\
                   device/model INTEL SSDSC2KB48\ndevice/serial SYSFS\nhctl 0:0:0:0\nhost scsi\n\
                   scsi/proc_name ahci\n\
                   @ sdb\ndev 8:16\nsize 2048\nqueue/rotational 1\ndevice/serial   SYS  FS  \n\
                   b8:0:E:ID_SERIAL=INTEL_SSDSC2KB480G8_PHYF1\n\
                   b8:0:E:ID_SERIAL_SHORT=PHYF1\nb8:0:E:ID_MODEL=INTEL_SSDSC2KB480G8\n\
                   b8:0:E:ID_MODEL_ENC=INTEL\\x20SSDSC2KB480G8\\x20\\x20\\x20\\x20\n\
                   b8:0:E:ID_WWN=0x55cd2e415123abcd\nb8:0:E:ID_WWN_WITH_EXTENSION=0x55cd2e415123abce\n\
                   b8:16:E:ID_SERIAL=A  B\nb8:16:E:ID_SCSI_SERIAL=  S   1 \nb8:16:E:SCSI_IDENT_SERIAL=\n";
        let disks = parse_sysfs(out);
        assert_eq!(disks[0].serial.as_deref(), Some("PHYF1"));
        assert_eq!(disks[0].model.as_deref(), Some("INTEL SSDSC2KB480G8"));
        assert_eq!(disks[0].wwn.as_deref(), Some("0x55cd2e415123abce"));
        assert_eq!(disks[0].transport.as_deref(), Some("sata"));
        assert_eq!(disks[0].kind, Some("ssd"));
        assert_eq!(disks[0].size_bytes, Some(937_703_088 * 512));
        // An empty SCSI_IDENT_SERIAL is no property to libudev: the next key answers.
        assert_eq!(disks[1].serial.as_deref(), Some("S 1"));
        // lsblk's versions agree on sda's serial (ID_SERIAL_SHORT only), not on sdb's: 2.27
        // gives none, 2.29 sysfs's, 2.34 ID_SCSI_SERIAL.
        assert_eq!(read_sysfs(out).unsettled, ["sdb"]);
        assert_eq!(normalize_whitespace("  S   1 \t"), "S 1");
        assert_eq!(normalize_whitespace("a \t b"), "a b");
    }

    #[test]
    fn this_vm_sysfs_recording_gives_its_lsblk_golden_output() {
        // The script's output recorded here, against the golden output of lsblk's JSON of the
        // same VM (the collector's data, reasons included).
        let data = FixtureExecutor::new("t")
            .command(SYSFS, include_str!("../fixtures/firecracker-vm/sysfs.txt"))
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        let golden: Value =
            serde_json::from_str(include_str!("../fixtures/firecracker-vm/output.json"))
                .expect("JSON");
        assert_eq!(data, golden);
    }

    #[test]
    fn where_lsblks_versions_disagree_on_a_serial_the_hosts_own_lsblk_answers() {
        // A SAS disk: udev's unit serial (ID_SCSI_SERIAL, taken since util-linux 2.34) is not
        // its NAA id (ID_SERIAL_SHORT, taken before): RHEL 8's lsblk 2.32 gave the second, and
        // that is the disk's id in the CMDB. The host's lsblk is asked, and its answer kept.
        let sas = "@ sda\ndev 8:0\nsize 2048\nqueue/rotational 1\n\
                   b8:0:E:ID_SCSI_SERIAL=ZC1A2B3C\nb8:0:E:ID_SERIAL_SHORT=5000c500a1b2c3d4\n";
        let lsblk_232 = r#"{"blockdevices": [{"name": "sda", "size": "2048", "model": null, "serial": "5000c500a1b2c3d4", "rota": "1", "type": "disk", "tran": "sas", "rev": null, "wwn": null}]}"#;
        let data = FixtureExecutor::new("rhel8")
            .command(SYSFS, sas)
            .command(LSBLK, lsblk_232)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(disks(&data)[0]["id"], "5000c500a1b2c3d4");
        assert_eq!(disks(&data)[0]["transport"], "sas");
        // No lsblk there (its answer `not found`): the sysfs disks, with the reason.
        let data = FixtureExecutor::new("no-lsblk")
            .command(SYSFS, sas)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(disks(&data)[0]["id"], "ZC1A2B3C");
        assert!(
            data["reasons"]["disks"]
                .as_str()
                .is_some_and(|r| r.contains("2.38")),
            "{data}"
        );
        // Where every version agrees (ID_SERIAL_SHORT and no SCSI keys), lsblk is not asked:
        // its fixture's answer would fail the collection.
        let sata = "@ sda\ndev 8:0\nsize 2048\nqueue/rotational 0\n\
                    b8:0:E:ID_SERIAL=INTEL_SSDSC2KB480G8_PHYF1\nb8:0:E:ID_SERIAL_SHORT=PHYF1\n";
        let data = FixtureExecutor::new("sata")
            .command(SYSFS, sata)
            .command(LSBLK, "not JSON")
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(disks(&data)[0]["id"], "PHYF1");
        assert_eq!(data["reasons"], json!({}));
    }

    /// A real kernel (Debian 12's 6.1) and real udev (systemd 252) in QEMU, recorded here by
    /// `scripts/record-disk-qemu.sh`: SATA (AHCI) with a WWN, USB storage, virtio-scsi with a
    /// unit serial unlike its NAA id, NVMe, virtio-blk with and without a serial, a DVD and a
    /// floppy (not a disk by name); the script's output and lsblk 2.38.1's of the same boot.
    #[test]
    fn a_real_kernel_and_udev_in_qemu_give_lsblks_disks() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/qemu-debian12-udev");
        let sysfs = std::fs::read_to_string(dir.join("sysfs.txt")).expect("fixture");
        let lsblk = std::fs::read_to_string(dir.join("lsblk.json")).expect("fixture");
        let mut theirs = parse_lsblk(&lsblk).expect("parses");
        theirs.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(parse_sysfs(&sysfs), theirs);
        // The kernel names the SCSI disks in the order they are found (it varies from boot to
        // boot): the virtio-scsi disk by its serial.
        let scsi = theirs
            .iter()
            .find(|d| d.serial.as_deref() == Some("SCSI-SN-0002"))
            .expect("the virtio-scsi disk");
        assert_eq!(scsi.wwn.as_deref(), Some("0x5000c500a1b2c3d4"));
        // Its NAA id (ID_SERIAL_SHORT) was its serial before util-linux 2.34, vda's ID_SERIAL
        // none before 2.36: this host's own lsblk is asked.
        assert_eq!(read_sysfs(&sysfs).unsettled, [scsi.name.as_str(), "vda"]);
        let data = FixtureExecutor::new("qemu")
            .command(SYSFS, &sysfs)
            .command(LSBLK, &lsblk)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        plugin_api::testing::golden(&dir, &data);
        let mut ids: Vec<_> = disks(&data)
            .iter()
            .filter_map(|d| d["id"].as_str().map(String::from))
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                "NVME-SN-0003",
                "SATA-SN-0001",
                "SCSI-SN-0002",
                "USB-SN-0004",
                "VIRTIO-SN-5",
                "vdb"
            ]
        );
    }

    #[test]
    fn an_unreadable_udev_database_is_said() {
        let out = "@ vda\ndev 254:0\nsize 2048\nqueue/rotational 1\nudev-unreadable\n";
        let data = FixtureExecutor::new("t")
            .command(SYSFS, out)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert!(data["reasons"]["vda.serial"]
            .as_str()
            .is_some_and(|r| r.contains("not readable")));
    }

    /// The script the same under dash, bash with `failglob` set (a startup file's), and busybox
    /// where it is installed; a read that fails prints no value (not the one before it).
    #[test]
    fn the_script_under_every_shell_and_a_failed_read() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("t");
        generate(&root, &mut Rng(7), false);
        let root_text = root.to_str().expect("UTF-8 path");
        let under = |shell: &[&str]| sysfs_by(shell, root_text);
        let dash = under(&["dash"]);
        assert!(dash.contains("\n@ "), "{dash}");
        assert_eq!(under(&["bash", "-O", "failglob"]), dash);
        if std::path::Path::new("/bin/busybox").exists() {
            assert_eq!(under(&["busybox", "sh"]), dash);
        }
        // A device/serial that cannot be read (a directory: EISDIR) after a model that can.
        let (name, sd) = std::fs::read_dir(root.join("sys/block"))
            .expect("dir")
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::canonicalize(e.path()).expect("link"))
            })
            .find(|(_, p)| p.join("device/model").is_file())
            .expect("a disk with a model");
        let serial = sd.join("device/serial");
        let _ = std::fs::remove_file(&serial);
        std::fs::create_dir_all(&serial).expect("mkdir");
        for shell in [&["dash"][..], &["bash"]] {
            let out = under(shell);
            let at = out
                .find(&format!("@ {name}\n"))
                .expect("the disk's section");
            let section = out[at + 2..].split("\n@ ").next().expect("a section");
            assert!(section.contains("device/model "), "{shell:?}: {section}");
            assert!(!section.contains("device/serial "), "{shell:?}: {section}");
        }
    }

    #[test]
    fn a_host_without_sys_block_is_asked_lsblk() {
        let data = FixtureExecutor::new("nosys")
            .command_output(SYSFS, "", "no /sys/block\n", Some(3))
            .command(LSBLK, include_str!("../fixtures/firecracker-vm/lsblk.json"))
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(disks(&data)[0]["name"], "vda");
        // A host with /sys/block is never asked lsblk.
        let data = FixtureExecutor::new("sys")
            .command(
                SYSFS,
                "@ vda\ndev 254:0\nsize 536870912\nqueue/rotational 1\n",
            )
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(disks(&data)[0]["size_bytes"], 274_877_906_944u64);
        assert_eq!(disks(&data)[0]["kind"], "virtual");
    }
}
