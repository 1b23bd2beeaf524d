//! The `psu` collector: the power supplies, from SMBIOS (Type 39, `System Power Supply`) and,
//! where a BMC answers, from IPMI sensors.
//!
//! One round trip: one `sh` script (see [`script`]) runs `dmidecode -t 39` and, where ipmitool is
//! installed, `ipmitool sdr type 'Power Supply'`, each under its own section with its exit code.
//! With the option `{ "sudo": true }` both run under `sudo -n` (as in the `memory` collector: a
//! NOPASSWD rule is needed; `-n` never waits for a password).
//!
//! Its data (report schema 2): the part list `supplies` keyed by `["serial", "location", "name"]`:
//! the id is the supply's serial (when it is not a placeholder and no other supply has it), else its
//! location, else its name, else `PSU N`; ` #2`, ` #3` tell apart supplies that would share one.
//! Attributes from SMBIOS: `name`, `location`, `group` (power unit group), `manufacturer`,
//! `serial`, `part_number`, `revision`, `max_power_watts`, `type`, `hot_replaceable`; from IPMI:
//! `ipmi_sensor` and `ipmi_status` (the sensor's state, `Presence detected, Failure detected`; its
//! wattage, which changes all the time, is left out). Bays that SMBIOS reports `Not Present` are
//! skipped. IPMI sensors are matched to SMBIOS supplies by their order when both list the same
//! number; where SMBIOS lists none, each IPMI supply sensor is a part (id: the sensor name). The
//! fact `redundancy` is IPMI's power-supply redundancy sensor (`Fully Redundant`, ...), `null`
//! with a reason when there is none.
//!
//! Degrading: with neither source the list is `unavailable` and says why for each (`dmidecode not
//! installed`, `permission denied: needs root (or the option sudo = true)`, `no SMBIOS/DMI on this
//! machine`, `ipmitool: Could not open device at /dev/ipmi0 ...`). Errors: bad options, or the
//! script printed nothing at all.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    batch::{self, Section},
    export_collector,
    serde_json::{json, Value},
    CollectError, Data, Target,
};

/// Below the host's default collector timeout (10 s): a slow BMC answers sdr in seconds.
const TIMEOUT: Duration = Duration::from_secs(9);

/// Where dmidecode can find an SMBIOS entry point (the kernel's table, the EFI system table,
/// /dev/mem): elsewhere it would only say "no SMBIOS", so the script does not start it.
const SMBIOS: &str =
    "[ -e /sys/firmware/dmi/tables/smbios_entry_point ] || [ -e /sys/firmware/efi/systab ] \
|| [ -e /proc/efi/systab ] || [ -e /dev/mem ]";

/// What stands in for dmidecode's output where no entry point exists.
pub const NO_ENTRY_POINT: &str =
    "no SMBIOS entry point (no kernel DMI table, EFI systab or /dev/mem)";

/// The one command this collector runs.
pub fn script(sudo: bool) -> String {
    let s = if sudo { "sudo -n " } else { "" };
    format!(
        "PATH=\"$PATH:/usr/sbin:/sbin\"; \
         if command -v dmidecode >/dev/null 2>&1; then printf '==> dmidecode\\n'; \
         if {SMBIOS}; then {s}dmidecode -t 39 2>&1; else echo '{NO_ENTRY_POINT}'; false; fi; \
         printf '==> dmidecode.exit\\n%s\\n' $?; else printf '=!> dmidecode missing\\n'; fi; \
         if command -v ipmitool >/dev/null 2>&1; then printf '==> ipmitool\\n'; {s}ipmitool sdr type 'Power Supply' 2>&1; \
         printf '==> ipmitool.exit\\n%s\\n' $?; else printf '=!> ipmitool missing\\n'; fi; \
         printf '==> end\\n'"
    )
}

/// One power supply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Supply {
    pub name: Option<String>,
    pub location: Option<String>,
    pub group: Option<String>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub part_number: Option<String>,
    pub revision: Option<String>,
    pub max_power_watts: Option<u64>,
    pub kind: Option<String>,
    pub hot_replaceable: Option<bool>,
    pub ipmi_sensor: Option<String>,
    pub ipmi_status: Option<String>,
}

/// Texts firmware puts where it has nothing to say.
fn meaningful(value: &str) -> Option<String> {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    let placeholder = v.is_empty()
        || matches!(
            lower.as_str(),
            "not specified"
                | "unknown"
                | "none"
                | "n/a"
                | "to be filled by o.e.m."
                | "not applicable"
                | "default string"
                | "other"
        )
        || v.chars().all(|c| c == '0' || c == ' ');
    (!placeholder).then(|| v.to_string())
}

/// The `System Power Supply` records of `dmidecode -t 39`, each as its `key: value` lines.
fn records(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: Option<BTreeMap<String, String>> = None;
    let mut header_next = false;
    for line in text.lines() {
        if line.starts_with("Handle ") {
            out.extend(cur.take());
            header_next = true;
            continue;
        }
        if header_next {
            header_next = false;
            if line.trim() == "System Power Supply" {
                cur = Some(BTreeMap::new());
            }
            continue;
        }
        if let Some(r) = cur.as_mut() {
            if let Some(rest) = line.strip_prefix('\t') {
                if rest.starts_with('\t') {
                    continue;
                }
                if let Some((k, v)) = rest.split_once(':') {
                    r.insert(k.trim().to_string(), v.trim().to_string());
                }
            } else if line.trim().is_empty() {
                out.extend(cur.take());
            }
        }
    }
    out.extend(cur);
    out
}

/// The supplies of a `dmidecode -t 39` output; bays `Not Present` are skipped.
pub fn parse_dmidecode(text: &str) -> Vec<Supply> {
    records(text)
        .into_iter()
        .filter(|r| {
            !r.get("Status")
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("not present"))
        })
        .map(|r| {
            let get = |k: &str| r.get(k).and_then(|v| meaningful(v));
            Supply {
                name: get("Name"),
                location: get("Location"),
                group: get("Power Unit Group"),
                manufacturer: get("Manufacturer"),
                serial: get("Serial Number"),
                part_number: get("Model Part Number"),
                revision: get("Revision"),
                max_power_watts: r.get("Max Power Capacity").and_then(|v| {
                    let mut w = v.split_whitespace();
                    let n: u64 = w.next()?.parse().ok()?;
                    (w.next()? == "W" && n > 0).then_some(n)
                }),
                kind: get("Type"),
                hot_replaceable: r.get("Hot Replaceable").and_then(|v| match v.as_str() {
                    "Yes" => Some(true),
                    "No" => Some(false),
                    _ => None,
                }),
                ..Supply::default()
            }
        })
        .collect()
}

/// `ipmitool sdr type 'Power Supply'` rows: (sensor name, reading). Supply sensors are those whose
/// reading tells presence; the redundancy sensor is returned apart.
pub fn parse_ipmitool(text: &str) -> (Vec<(String, String)>, Option<String>) {
    let mut supplies = Vec::new();
    let mut redundancy = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        if f.len() < 5 || f[0].is_empty() {
            continue;
        }
        let reading = f[4];
        let lower = reading.to_ascii_lowercase();
        if lower.contains("redundan") {
            redundancy = Some(reading.to_string());
        } else if lower.contains("presence")
            || lower.contains("absent")
            || lower.contains("failure")
        {
            // Drop the wattage (`95 Watts, Presence detected`): it changes all the time.
            let status: Vec<&str> = reading
                .split(',')
                .map(str::trim)
                .filter(|p| !p.ends_with("Watts"))
                .collect();
            supplies.push((f[0].to_string(), status.join(", ")));
        }
    }
    (supplies, redundancy)
}

/// Why dmidecode gave no table, from what it printed and its exit code; `None` when it worked.
pub fn dmidecode_failure(text: &str, exit: Option<i32>) -> Option<String> {
    if text.contains("a password is required") || text.contains("sudo: a terminal is required") {
        return Some("permission denied: sudo needs a password for dmidecode".into());
    }
    if text.contains("Permission denied") || text.contains("Operation not permitted") {
        return Some("permission denied: needs root (or the option sudo = true)".into());
    }
    if text.contains("No SMBIOS nor DMI entry point found")
        || text.contains("/dev/mem: No such file or directory")
        || text.contains(NO_ENTRY_POINT)
    {
        return Some("no SMBIOS/DMI on this machine".into());
    }
    match exit {
        Some(0) | None => None,
        Some(c) => Some(format!(
            "dmidecode failed with exit code {c}: {}",
            text.lines()
                .find(|l| !l.starts_with('#') && !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        )),
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

fn content<'a>(sections: &'a BTreeMap<String, Section>, name: &str) -> Option<&'a str> {
    match sections.get(name) {
        Some(Section::Content(c)) => Some(c.as_str()),
        _ => None,
    }
}

/// Collects with one script.
pub fn collect(target: &Target<'_>, options: &Value) -> Result<Value, CollectError> {
    let sudo = sudo_option(options)?;
    let sections = batch::run(target, &script(sudo), TIMEOUT, "psu")?;
    let exit = |name: &str| {
        content(&sections, &format!("{name}.exit")).and_then(|e| e.trim().parse::<i32>().ok())
    };
    let mut data = Data::new();
    let mut why_not = Vec::new();

    let mut supplies = match content(&sections, "dmidecode") {
        Some(text) => match dmidecode_failure(text, exit("dmidecode")) {
            Some(why) => {
                why_not.push(format!("dmidecode: {why}"));
                Vec::new()
            }
            None => {
                let s = parse_dmidecode(text);
                if s.is_empty() {
                    why_not.push("dmidecode: SMBIOS lists no power supply (no type 39)".into());
                }
                s
            }
        },
        None => {
            why_not.push("dmidecode not installed".into());
            Vec::new()
        }
    };

    let (sensors, redundancy) = match content(&sections, "ipmitool") {
        Some(text) => {
            let (sensors, redundancy) = parse_ipmitool(text);
            if sensors.is_empty() {
                let first = text.lines().map(str::trim).find(|l| !l.is_empty());
                why_not.push(format!(
                    "ipmitool: {}",
                    first.unwrap_or("no power supply sensor")
                ));
            }
            (sensors, redundancy)
        }
        None => {
            why_not.push("ipmitool not installed".into());
            (Vec::new(), None)
        }
    };

    if supplies.is_empty() {
        supplies = sensors
            .iter()
            .map(|(name, status)| Supply {
                ipmi_sensor: Some(name.clone()),
                ipmi_status: Some(status.clone()),
                ..Supply::default()
            })
            .collect();
    } else if sensors.len() == supplies.len() {
        for (s, (name, status)) in supplies.iter_mut().zip(&sensors) {
            s.ipmi_sensor = Some(name.clone());
            s.ipmi_status = Some(status.clone());
        }
    } else if !sensors.is_empty() {
        data.reason(
            "supplies.ipmi_status",
            format!(
                "ipmitool lists {} supply sensors and SMBIOS {} supplies: not matched",
                sensors.len(),
                supplies.len()
            ),
        );
    }

    match &redundancy {
        Some(r) => {
            data.fact("redundancy", r.as_str());
        }
        None => {
            data.fact("redundancy", Value::Null).reason(
                "redundancy",
                "no IPMI power supply redundancy sensor was read",
            );
        }
    }

    if supplies.is_empty() {
        let why = why_not.join("; ");
        data.unavailable("supplies", why.clone())
            .reason("supplies", why);
        return data.build();
    }

    // Ids: serial when unique, else location, else name, else the position.
    let mut serial_count: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &supplies {
        if let Some(serial) = s.serial.as_deref() {
            *serial_count.entry(serial).or_default() += 1;
        }
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut parts = Vec::new();
    for (i, s) in supplies.iter().enumerate() {
        let base = s
            .serial
            .as_deref()
            .filter(|x| serial_count[x] == 1)
            .map(str::to_string)
            .or_else(|| s.location.clone())
            .or_else(|| s.name.clone())
            .or_else(|| s.ipmi_sensor.clone())
            .unwrap_or_else(|| format!("PSU {}", i + 1));
        let n = seen.entry(base.clone()).or_default();
        *n += 1;
        let id = if *n > 1 { format!("{base} #{n}") } else { base };
        parts.push((id, s));
    }
    let list = data.list("supplies", &["serial", "location", "name"]);
    for (id, s) in parts {
        list.part(
            id,
            json!({
                "name": s.name,
                "location": s.location,
                "group": s.group,
                "manufacturer": s.manufacturer,
                "serial": s.serial,
                "part_number": s.part_number,
                "revision": s.revision,
                "max_power_watts": s.max_power_watts,
                "type": s.kind,
                "hot_replaceable": s.hot_replaceable,
                "ipmi_sensor": s.ipmi_sensor,
                "ipmi_status": s.ipmi_status,
            }),
        );
    }
    data.build()
}

export_collector!(
    name = "psu",
    description = "power supplies (SMBIOS type 39, ipmitool)",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::testing::FixtureExecutor;

    use super::*;

    fn fixture(case: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(case)
    }

    fn read(case: &str, file: &str) -> String {
        std::fs::read_to_string(fixture(case).join(file)).expect("fixture")
    }

    /// The script's output around recorded outputs (`None`: the tool is missing).
    fn script_out(dmi: Option<(&str, i32)>, ipmi: Option<(&str, i32)>) -> String {
        let mut s = match dmi {
            Some((t, e)) => format!("==> dmidecode\n{t}\n==> dmidecode.exit\n{e}\n"),
            None => "=!> dmidecode missing\n".into(),
        };
        s.push_str(&match ipmi {
            Some((t, e)) => format!("==> ipmitool\n{t}\n==> ipmitool.exit\n{e}\n"),
            None => "=!> ipmitool missing\n".into(),
        });
        s + "==> end\n"
    }

    fn cases() -> Vec<(&'static str, String)> {
        vec![
            (
                "supermicro-ssg-6028r",
                script_out(
                    Some((&read("supermicro-ssg-6028r", "dmidecode-t39.txt"), 0)),
                    None,
                ),
            ),
            (
                "hp-dl380p-gen8",
                script_out(
                    Some((&read("hp-dl380p-gen8", "dmidecode-t39.txt"), 0)),
                    None,
                ),
            ),
            (
                "dell-dss7500",
                script_out(Some((&read("dell-dss7500", "dmidecode-t39.txt"), 0)), None),
            ),
            (
                "hp-dl360-ipmi",
                script_out(
                    Some(("# dmidecode 3.4\n/dev/mem: No such file or directory", 1)),
                    Some((&read("hp-dl360-ipmi", "ipmitool-sdr-adapted.txt"), 0)),
                ),
            ),
            ("firecracker-vm", read("firecracker-vm", "script.out")),
            (
                "non-root",
                script_out(
                    Some((&read("non-root", "dmidecode.txt"), 1)),
                    Some((&read("non-root", "ipmitool.txt"), 1)),
                ),
            ),
        ]
    }

    fn run(out: &str) -> Value {
        FixtureExecutor::new("t")
            .command(&script(false), out)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects")
    }

    fn parts(data: &Value) -> &Vec<Value> {
        data["lists"]["supplies"]["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("seen: {data}"))
    }

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, out) in cases() {
            plugin_api::testing::golden(fixture(case), &run(&out));
        }
    }

    #[test]
    fn supermicro_two_present_one_empty_bay() {
        let data = run(&cases()[0].1);
        let p = parts(&data);
        assert_eq!(p.len(), 2, "the Not Present bay is skipped");
        assert_eq!(p[0]["id"], "P9212CH10JT1664");
        assert_eq!(p[0]["max_power_watts"], 920);
        assert_eq!(p[0]["part_number"], "PWS-920P-SQ");
        assert_eq!(p[0]["hot_replaceable"], false);
        assert_eq!(p[1]["location"], "System Power Supply #2");
    }

    #[test]
    fn anonymised_equal_serials_fall_back_to_the_name() {
        // HP: serials anonymised to 4242 by the publisher; names tell the supplies apart.
        let data = run(&cases()[1].1);
        let ids: Vec<_> = parts(&data).iter().map(|p| p["id"].clone()).collect();
        assert_eq!(ids, [json!("Power Supply 1"), json!("Power Supply 2")]);
        assert_eq!(parts(&data)[0]["part_number"], "656362-B21");
        // Dell: same name too: ` #2`.
        let data = run(&cases()[2].1);
        let ids: Vec<_> = parts(&data).iter().map(|p| p["id"].clone()).collect();
        assert_eq!(
            ids,
            [
                json!("PWR SPLY,1600W,RDNT,DELTA"),
                json!("PWR SPLY,1600W,RDNT,DELTA #2")
            ]
        );
    }

    #[test]
    fn ipmi_only_with_failure_and_redundancy() {
        let data = run(&cases()[3].1);
        let p = parts(&data);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["id"], "Power Supply 1");
        assert_eq!(p[0]["ipmi_status"], "Presence detected, Failure detected");
        assert_eq!(p[1]["ipmi_status"], "Presence detected");
        assert_eq!(
            data["facts"]["redundancy"],
            "Non-Redundant: Sufficient from Redundant"
        );
    }

    #[test]
    fn neither_source_is_unavailable_with_both_reasons() {
        let data = run(&cases()[4].1);
        let why = data["lists"]["supplies"]["unavailable"]
            .as_str()
            .expect("unavailable");
        assert!(why.contains("no SMBIOS/DMI"), "{why}");
        assert!(why.contains("ipmitool"), "{why}");
        let data = run(&script_out(
            Some((&read("non-root", "dmidecode.txt"), 1)),
            Some((&read("non-root", "ipmitool.txt"), 1)),
        ));
        let why = data["lists"]["supplies"]["unavailable"]
            .as_str()
            .expect("unavailable");
        assert!(
            why.starts_with("dmidecode: permission denied: needs root"),
            "{why}"
        );
        assert!(why.contains("Could not open device at /dev/ipmi0"), "{why}");
    }

    #[test]
    fn sudo_option() {
        assert!(script(true).contains("sudo -n dmidecode -t 39"));
        assert!(script(true).contains("sudo -n ipmitool sdr type 'Power Supply'"));
        let err = FixtureExecutor::new("t")
            .with_target(|t| collect(t, &json!({"sudo": "yes"})))
            .expect_err("bad");
        assert_eq!(err.kind, "bad_options");
    }

    #[test]
    fn no_entry_point_reads_as_no_smbios_without_starting_dmidecode() {
        // What the script prints where no SMBIOS entry point exists (this VM): dmidecode's own
        // answer there ("/dev/mem: No such file or directory") reads the same.
        let mut reasons = Vec::new();
        for dmi in [
            NO_ENTRY_POINT,
            "# dmidecode 3.4\n/dev/mem: No such file or directory",
        ] {
            let data = FixtureExecutor::new("t")
                .command(&script(false), &script_out(Some((dmi, 1)), None))
                .with_target(|t| collect(t, &json!({})))
                .expect("collects");
            reasons.push(data["reasons"].clone());
        }
        assert_eq!(
            reasons[0]["supplies"],
            "dmidecode: no SMBIOS/DMI on this machine; ipmitool not installed"
        );
        assert_eq!(reasons[0], reasons[1]);
        // The script itself, on this machine: no dmidecode process where no entry point exists.
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script(false).replace("dmidecode -t 39", "echo STARTED"))
            .output()
            .expect("sh");
        let text = String::from_utf8_lossy(&out.stdout);
        let no_smbios = [
            "/sys/firmware/dmi/tables/smbios_entry_point",
            "/sys/firmware/efi/systab",
            "/proc/efi/systab",
            "/dev/mem",
        ]
        .iter()
        .all(|p| !std::path::Path::new(p).exists());
        if no_smbios && text.contains("==> dmidecode\n") {
            assert!(
                text.contains(NO_ENTRY_POINT) && !text.contains("STARTED"),
                "{text}"
            );
        }
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-psu -- --ignored"]
    fn live_this_machine() {
        // AUTO_RECORD=DIR writes this machine's script output as DIR/script.out (a new case).
        if let Ok(dir) = std::env::var("AUTO_RECORD") {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(script(false))
                .output()
                .expect("sh");
            std::fs::write(std::path::Path::new(&dir).join("script.out"), out.stdout)
                .expect("write");
        }
        let data = FixtureExecutor::new("local")
            .record_command(&script(false))
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        // Fact parity with dmidecode's own count of type-39 records that are present.
        let out = std::process::Command::new("dmidecode")
            .args(["-t", "39"])
            .output();
        if let Some(out) = out.ok().filter(|o| o.status.success()) {
            let text = String::from_utf8_lossy(&out.stdout);
            let present = text
                .lines()
                .filter(|l| l.trim() == "System Power Supply")
                .count()
                - text.matches("Status: Not Present").count();
            if present > 0 {
                assert_eq!(parts(&data).len(), present);
            }
        } else {
            assert!(data["lists"]["supplies"]["unavailable"].is_string());
        }
    }
}
