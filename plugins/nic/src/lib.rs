//! The `nic` collector: network interfaces with MAC, state, MTU, speed and addresses.
//!
//! Two commands on the target: `ip -d -j addr` (an iproute2 with JSON output; `-d` adds the link
//! kind; where it fails, a third: `ip -d -o link show` and `ip -o addr show` in one line, read as text)
//! and one `sh` loop that prints `NAME SPEED` for every entry of `/sys/class/net` (`-` where the
//! kernel refuses to say).
//!
//! Rules: the loopback interface is left out (by name, `link_type` or the `LOOPBACK` flag), and so
//! are veth devices (link kind `veth`: container plumbing that comes and goes with every container
//! and would flood the change log); every other interface is kept (bonds, VLANs, bridges, tun: the
//! CMDB sees what the host sees). Options: `include_veth = true` keeps veth devices,
//! `exclude_prefixes = ["docker", "br-"]` leaves out interfaces whose name starts so.
//!
//! Its data (report schema 2) is the part list `interfaces`, keyed by `["permanent_mac", "name"]`:
//! an interface's id is its permanent MAC where iproute2 shows one (`permaddr`, which stays when a
//! bond or a user changes the address), else its name; attributes `name`, `mac`, `permanent_mac`,
//! `up`, `mtu_bytes`, `speed_mbps`, `addresses` (`[{address, prefix_len}]`).
//!
//! `mac` is the permanent address where iproute2 shows one (`permaddr`: a bond slave's own MAC),
//! else `address`; `null` for interfaces without a hardware address (tun, wireguard).
//! `up` means administratively up with a carrier (`UP` and `LOWER_UP` flags). `speed_mbps` is
//! `null` where `/sys/class/net/IFACE/speed` cannot be read (interface down, virtual device) or
//! says `-1` (virtio and most virtual drivers). `addresses` lists IPv4 and IPv6 addresses, link-local
//! ones included, in iproute2's order.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    export_collector,
    serde_json::{self, json, Map, Value},
    CollectError, Data, Target,
};

const IP_ADDR: &str = "ip -d -j addr";
/// The same facts as text, for an iproute2 without JSON output (e.g. CentOS 7's 4.11).
const IP_TEXT: &str = "ip -d -o link show && echo '==> addresses' && ip -o addr show";
/// Prints `/sys/class/net/NAME/speed:SPEED` a line, in one process (a shell loop forking `cat`
/// per interface cost ~1 ms an interface); an interface whose speed cannot be read (down, virtual)
/// is simply absent.
const SPEEDS: &str = "grep -H . /sys/class/net/*/speed 2>/dev/null; true";
/// Below the host's default collector timeout (10 s), so that the executor kills a hung command
/// and this collector reports it before the host gives up on the whole collector.
const TIMEOUT: Duration = Duration::from_secs(8);

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// `permaddr`, where iproute2 shows it.
    pub permanent_mac: Option<String>,
    pub up: bool,
    pub mtu: Option<u64>,
    pub speed_mbps: Option<u64>,
    pub addresses: Vec<(String, Option<u64>)>,
}

impl Interface {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "mac": self.mac,
            "permanent_mac": self.permanent_mac,
            "up": self.up,
            "mtu_bytes": self.mtu,
            "speed_mbps": self.speed_mbps,
            "addresses": self
                .addresses
                .iter()
                .map(|(a, p)| json!({ "address": a, "prefix_len": p }))
                .collect::<Vec<_>>(),
        })
    }
}

/// The speeds printed by [`SPEEDS`] (or `NAME SPEED` lines, `-` for unknown): name to Mb/s,
/// `None` where unknown.
pub fn parse_speeds(stdout: &str) -> BTreeMap<String, Option<u64>> {
    stdout
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (name, speed) = match line.strip_prefix("/sys/class/net/") {
                Some(rest) => {
                    let (path, speed) = rest.split_once(':')?;
                    (path.strip_suffix("/speed")?, speed)
                }
                None => line.split_once(' ')?,
            };
            let speed = speed.trim().parse::<i64>().ok().filter(|s| *s > 0);
            Some((name.to_string(), speed.and_then(|s| u64::try_from(s).ok())))
        })
        .collect()
}

fn has_flag(link: &Value, flag: &str) -> bool {
    link.get("flags")
        .and_then(Value::as_array)
        .is_some_and(|flags| flags.iter().any(|f| f.as_str() == Some(flag)))
}

/// Which interfaces to leave out besides the loopback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub include_veth: bool,
    pub exclude_prefixes: Vec<String>,
}

impl Filter {
    /// Reads `include_veth` and `exclude_prefixes` from the collector's options.
    pub fn from_options(options: &Value) -> Result<Self, CollectError> {
        let include_veth = match options.get("include_veth") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(CollectError::new(
                    "bad_options",
                    format!("option include_veth must be true or false, not {other}"),
                ))
            }
        };
        let exclude_prefixes = match options.get("exclude_prefixes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str().map(str::to_string).ok_or_else(|| {
                        CollectError::new(
                            "bad_options",
                            format!("option exclude_prefixes must list names, not {i}"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(CollectError::new(
                    "bad_options",
                    format!("option exclude_prefixes must be a list of names, not {other}"),
                ))
            }
        };
        Ok(Self {
            include_veth,
            exclude_prefixes,
        })
    }

    fn keeps(&self, name: &str, link: &Value) -> bool {
        let loopback = name == "lo"
            || link.get("link_type").and_then(Value::as_str) == Some("loopback")
            || has_flag(link, "LOOPBACK");
        let kind = link
            .get("linkinfo")
            .and_then(|l| l.get("info_kind"))
            .and_then(Value::as_str);
        let veth = kind == Some("veth");
        !loopback
            && (self.include_veth || !veth)
            && !self
                .exclude_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }
}

/// The interfaces of `ip [-d] -j addr` that `filter` keeps, speeds from `speeds`.
pub fn parse_ip_addr(
    stdout: &str,
    speeds: &BTreeMap<String, Option<u64>>,
    filter: &Filter,
) -> Result<Vec<Interface>, CollectError> {
    let links: Vec<Value> = serde_json::from_str(stdout)
        .map_err(|e| CollectError::parse(format!("`{IP_ADDR}` printed invalid JSON: {e}")))?;
    Ok(interfaces_of(&links, speeds, filter))
}

/// The interfaces of iproute2's JSON links (or of [`parse_ip_text`]'s), filtered.
fn interfaces_of(
    links: &[Value],
    speeds: &BTreeMap<String, Option<u64>>,
    filter: &Filter,
) -> Vec<Interface> {
    let mut interfaces = Vec::new();
    for link in links {
        // Old iproute2 (4.x) adds empty `{}` entries to the list: skip anything without a name.
        let Some(name) = link.get("ifname").and_then(Value::as_str) else {
            continue;
        };
        if !filter.keeps(name, link) {
            continue;
        }
        let mac = ["permaddr", "address"]
            .iter()
            .filter_map(|k| link.get(*k).and_then(Value::as_str))
            .find(|m| !m.is_empty())
            .map(str::to_string);
        let addresses = link
            .get("addr_info")
            .and_then(Value::as_array)
            .map(|infos| {
                infos
                    .iter()
                    .filter_map(|info| {
                        let local = info.get("local").and_then(Value::as_str)?;
                        Some((
                            local.to_string(),
                            info.get("prefixlen").and_then(Value::as_u64),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let permanent_mac = link
            .get("permaddr")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        interfaces.push(Interface {
            name: name.to_string(),
            mac,
            permanent_mac,
            up: has_flag(link, "UP") && has_flag(link, "LOWER_UP"),
            mtu: link.get("mtu").and_then(Value::as_u64),
            speed_mbps: speeds.get(name).copied().flatten(),
            addresses,
        });
    }
    interfaces
}

/// Reads the text of [`IP_TEXT`] (`ip -o link` lines, a marker, `ip -o addr` lines) into the
/// shape of iproute2's JSON, so that one set of rules applies to both.
pub fn parse_ip_text(stdout: &str) -> Vec<Value> {
    let (link_part, addr_part) = stdout.split_once("==> addresses").unwrap_or((stdout, ""));
    let mut links: Vec<Value> = Vec::new();
    for line in link_part.lines() {
        // `4: eth0: <BROADCAST,...> mtu 1400 ... \    link/ether 02:fc:.. brd ff:.. [permaddr ..] ...`
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(": ") else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        let flags: Vec<Value> = rest
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(f, _)| f.split(',').map(|f| json!(f)).collect())
            .unwrap_or_default();
        let words: Vec<&str> = rest.split_whitespace().collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1).copied())
        };
        let mtu = after("mtu").and_then(|m| m.parse::<u64>().ok());
        let link_pos = words.iter().position(|w| w.starts_with("link/"));
        let link_type = link_pos.map(|i| words[i].trim_start_matches("link/"));
        let address = link_pos
            .and_then(|i| words.get(i + 1))
            .filter(|a| a.contains(':'))
            .copied();
        let details = link_pos.map(|i| &words[i..]).unwrap_or_default();
        let mut link = json!({
            "ifname": name,
            "flags": flags,
            "mtu": mtu,
            "link_type": link_type,
            "address": address,
            "addr_info": [],
        });
        if let Some(permaddr) = after("permaddr") {
            link["permaddr"] = json!(permaddr);
        }
        if details.contains(&"veth") {
            link["linkinfo"] = json!({ "info_kind": "veth" });
        }
        links.push(link);
    }
    for line in addr_part.lines() {
        // `4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\       valid_lft ...`
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(family), Some(cidr)) = (words.get(1), words.get(2), words.get(3))
        else {
            continue;
        };
        if *family != "inet" && *family != "inet6" {
            continue;
        }
        let name = name.split('@').next().unwrap_or(name);
        let (address, prefix) = cidr.split_once('/').unwrap_or((cidr, ""));
        let info = json!({ "local": address, "prefixlen": prefix.parse::<u64>().ok() });
        if let Some(link) = links.iter_mut().find(|l| l["ifname"] == name) {
            if let Some(list) = link["addr_info"].as_array_mut() {
                list.push(info);
            }
        }
    }
    links
}

/// Collects the interfaces of `target` with two commands (three on an old iproute2).
pub fn collect(target: &Target<'_>, options: &Value) -> Result<Value, CollectError> {
    let filter = Filter::from_options(options)?;
    let mut reasons = Map::new();
    // Speeds first: a command whatever `ip` gives, so that a dry run (salt mode's) learns it.
    let speeds = match target.run_ok(SPEEDS, TIMEOUT) {
        Ok(out) => parse_speeds(&out),
        Err(e) => {
            reasons.insert(
                "speed_mbps".into(),
                json!(format!("speeds unreadable: {e}")),
            );
            BTreeMap::new()
        }
    };
    // JSON first; the text form where this iproute2 has no JSON or prints a broken one.
    let links = match target.run_ok(IP_ADDR, TIMEOUT).and_then(|out| {
        serde_json::from_str::<Vec<Value>>(&out)
            .map_err(|e| CollectError::parse(format!("`{IP_ADDR}` printed invalid JSON: {e}")))
    }) {
        Ok(links) => links,
        Err(json_error) => match target.run_ok(IP_TEXT, TIMEOUT) {
            Ok(text) => {
                reasons.insert(
                    "source".into(),
                    json!(format!("read `{IP_TEXT}` as text: {json_error}")),
                );
                parse_ip_text(&text)
            }
            Err(text_error) => {
                return Err(CollectError::new(
                    json_error.kind,
                    format!(
                        "{}; and the text fallback: {text_error}",
                        json_error.message
                    ),
                ))
            }
        },
    };
    let interfaces = interfaces_of(&links, &speeds, &filter);
    let mut data = Data::new();
    for (field, why) in &reasons {
        data.reason(field, why.as_str().unwrap_or_default());
    }
    let list = data.list("interfaces", &["permanent_mac", "name"]);
    for (i, id) in interfaces.iter().zip(ids(&interfaces)) {
        list.part(id, i.to_json());
    }
    data.build()
}

/// Each interface's id: its permanent MAC where known and not shared with another interface, else
/// its name.
pub fn ids(interfaces: &[Interface]) -> Vec<String> {
    let shared = |mac: &str| {
        interfaces
            .iter()
            .filter(|i| i.permanent_mac.as_deref() == Some(mac))
            .count()
            > 1
    };
    interfaces
        .iter()
        .map(|i| match &i.permanent_mac {
            Some(mac) if !shared(mac) => mac.clone(),
            _ => i.name.clone(),
        })
        .collect()
}

export_collector!(
    name = "nic",
    description = "network interfaces: MAC, state, MTU, speed and addresses (iproute2, sysfs)",
    collect = collect
);

#[cfg(test)]
mod tests {
    use plugin_api::testing::FixtureExecutor;

    use super::*;

    fn run(ip: &str, speeds: Option<&str>) -> Result<Value, CollectError> {
        run_with(ip, speeds, json!({}))
    }

    fn run_with(ip: &str, speeds: Option<&str>, options: Value) -> Result<Value, CollectError> {
        let mut exec = FixtureExecutor::new("t").command(IP_ADDR, ip);
        if let Some(s) = speeds {
            exec = exec.command(SPEEDS, s);
        }
        exec.with_target(|t| collect(t, &options))
    }

    fn interfaces(data: &Value) -> &Vec<Value> {
        data["lists"]["interfaces"]["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("a list of interfaces: {data}"))
    }

    fn fixture(case: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(case)
    }

    fn read(case: &str, file: &str) -> String {
        std::fs::read_to_string(fixture(case).join(file)).expect("fixture")
    }

    /// Each fixture case as the collector sees it, with default options.
    fn cases() -> Vec<(&'static str, FixtureExecutor)> {
        vec![
            (
                "firecracker-vm",
                FixtureExecutor::new("vm")
                    .command(IP_ADDR, &read("firecracker-vm", "ip-addr.json"))
                    .command(SPEEDS, &read("firecracker-vm", "speeds.txt")),
            ),
            (
                "netns-bridge-veth",
                FixtureExecutor::new("netns")
                    .command(IP_ADDR, &read("netns-bridge-veth", "ip-d-addr.json"))
                    .command(SPEEDS, &read("netns-bridge-veth", "speeds.txt")),
            ),
            (
                // The old iproute2's text, as the fallback reads it.
                "supermicro-bond",
                FixtureExecutor::new("supermicro")
                    .command_output(IP_ADDR, "", "Option \"-j\" is unknown\n", Some(255))
                    .command(
                        IP_TEXT,
                        &format!(
                            "{}==> addresses\n",
                            read("supermicro-bond", "ip-o-link.txt")
                        ),
                    )
                    .command(SPEEDS, "eth0 1000\neth1 1000\n"),
            ),
            (
                "iproute2-brief-lo",
                FixtureExecutor::new("brief")
                    .command(IP_ADDR, &read("iproute2-brief-lo", "ip-json-brief.json"))
                    .command(SPEEDS, ""),
            ),
        ]
    }

    #[test]
    fn outputs_match_the_recorded_golden_files() {
        for (case, exec) in cases() {
            let data = exec
                .with_target(|t| collect(t, &json!({})))
                .expect("collects");
            plugin_api::testing::golden(fixture(case), &data);
        }
    }

    fn names(data: &Value) -> Vec<String> {
        data["lists"]["interfaces"]["parts"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|i| i["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn bridge_kept_veth_left_out_real_netns_recording() {
        let ip = include_str!("../fixtures/netns-bridge-veth/ip-d-addr.json");
        let speeds = include_str!("../fixtures/netns-bridge-veth/speeds.txt");
        let data = run(ip, Some(speeds)).expect("collects");
        assert_eq!(names(&data), ["br0", "ifb0"]);
        let br0 = &interfaces(&data)[0];
        assert_eq!(br0["id"], "br0", "no permanent MAC: its name");
        assert_eq!(br0["mac"], "42:b6:c0:1d:d3:e0");
        assert_eq!(br0["speed_mbps"], 10000);
        assert_eq!(
            br0["addresses"][0],
            json!({ "address": "172.17.0.1", "prefix_len": 16 })
        );

        let data = run_with(ip, Some(speeds), json!({ "include_veth": true })).expect("collects");
        assert_eq!(names(&data), ["br0", "veth0b", "veth0a", "ifb0"]);
        assert_eq!(interfaces(&data)[1]["mtu_bytes"], 9000);

        let data =
            run_with(ip, Some(speeds), json!({ "exclude_prefixes": ["ifb"] })).expect("collects");
        assert_eq!(names(&data), ["br0"]);

        let err = run_with(ip, Some(speeds), json!({ "exclude_prefixes": "ifb" }))
            .expect_err("not a list");
        assert_eq!(err.kind, "bad_options");
    }

    #[test]
    fn this_vm_real_outputs() {
        let data = run(
            include_str!("../fixtures/firecracker-vm/ip-addr.json"),
            Some(include_str!("../fixtures/firecracker-vm/speeds.txt")),
        )
        .expect("collects");
        let ifaces = interfaces(&data);
        let names: Vec<_> = ifaces.iter().filter_map(|i| i["name"].as_str()).collect();
        assert_eq!(names, ["ifb0", "ifb1", "eth0"], "no loopback");
        let eth0 = &ifaces[2];
        assert_eq!(eth0["mac"], "02:fc:00:00:00:01");
        assert_eq!(eth0["permanent_mac"], Value::Null);
        assert_eq!(eth0["id"], "eth0");
        assert_eq!(eth0["up"], true);
        assert_eq!(eth0["mtu_bytes"], 1400);
        assert_eq!(eth0["speed_mbps"], Value::Null, "virtio says -1");
        assert_eq!(
            eth0["addresses"],
            json!([
                { "address": "192.0.2.2", "prefix_len": 24 },
                { "address": "fd00::2", "prefix_len": 64 },
                { "address": "fe80::fc:ff:fe00:1", "prefix_len": 64 },
            ])
        );
        assert_eq!(ifaces[0]["up"], false);
        assert_eq!(ifaces[0]["addresses"], json!([]));
    }

    #[test]
    fn supermicro_bond_with_vlans() {
        let data = run(
            include_str!("../fixtures/supermicro-bond/ip-addr-adapted.json"),
            Some("eth0 1000\neth1 1000\nbond0 2000\nlo -\n"),
        )
        .expect("collects");
        let ifaces = interfaces(&data);
        let names: Vec<_> = ifaces.iter().filter_map(|i| i["name"].as_str()).collect();
        assert_eq!(
            names,
            [
                "eth0",
                "eth1",
                "bond0",
                "bond0.3000",
                "bond0.3001",
                "bond0.3002",
                "bond0.3003"
            ]
        );
        assert!(ifaces.iter().all(|i| i["mac"] == "0c:c4:7a:03:24:fb"));
        assert_eq!(ifaces[0]["speed_mbps"], 1000);
        assert_eq!(ifaces[3]["speed_mbps"], Value::Null);
    }

    #[test]
    fn old_iproute2_empty_entries_are_skipped() {
        let ip = include_str!("../fixtures/iproute2-brief-lo/ip-json-brief.json");
        let ifaces = parse_ip_addr(ip, &BTreeMap::new(), &Filter::default()).expect("parses");
        assert!(ifaces.is_empty(), "only lo and two empty objects");
    }

    #[test]
    fn permanent_mac_of_a_bond_slave_wins() {
        let ip = r#"[{"ifname":"eno1","flags":["BROADCAST","MULTICAST","SLAVE","UP","LOWER_UP"],"mtu":1500,"link_type":"ether","address":"aa:bb:cc:00:75:35","permaddr":"aa:bb:cc:00:32:10","addr_info":[]}]"#;
        let ifaces = parse_ip_addr(ip, &BTreeMap::new(), &Filter::default()).expect("parses");
        assert_eq!(ifaces[0].mac.as_deref(), Some("aa:bb:cc:00:32:10"));
        assert_eq!(
            ifaces[0].permanent_mac.as_deref(),
            Some("aa:bb:cc:00:32:10")
        );
        let data = FixtureExecutor::new("t")
            .command(IP_ADDR, ip)
            .command(SPEEDS, "")
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(interfaces(&data)[0]["id"], "aa:bb:cc:00:32:10");
        assert_eq!(
            data["lists"]["interfaces"]["key"],
            json!(["permanent_mac", "name"])
        );
    }

    #[test]
    fn unreadable_speeds_degrade_to_null() {
        let data = run(
            include_str!("../fixtures/firecracker-vm/ip-addr.json"),
            None,
        )
        .expect("collects");
        assert!(data["reasons"]["speed_mbps"].is_string());
        assert_eq!(interfaces(&data)[2]["speed_mbps"], Value::Null);
    }

    #[test]
    fn ip_without_json_and_without_text_is_an_error() {
        // Synthetic stderr of an iproute2 without JSON support.
        let err = FixtureExecutor::new("t")
            .command_output(
                IP_ADDR,
                "",
                "Option \"-j\" is unknown, try \"ip -help\".\n",
                Some(255),
            )
            .with_target(|t| collect(t, &json!({})))
            .expect_err("old iproute2, no text either");
        assert_eq!(err.kind, "command_failed");
        assert!(err.message.contains("-j"), "{}", err.message);
        assert!(err.message.contains("text fallback"), "{}", err.message);
    }

    #[test]
    fn text_fallback_on_a_supermicro_bond_real_ip_o_link() {
        let text = format!(
            "{}==> addresses\n",
            include_str!("../fixtures/supermicro-bond/ip-o-link.txt")
        );
        let data = FixtureExecutor::new("t")
            .command_output(IP_ADDR, "", "Option \"-j\" is unknown\n", Some(255))
            .command(IP_TEXT, &text)
            .command(SPEEDS, "eth0 1000\neth1 1000\n")
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(
            names(&data),
            [
                "eth0",
                "eth1",
                "bond0",
                "bond0.3000",
                "bond0.3001",
                "bond0.3002",
                "bond0.3003"
            ]
        );
        let eth0 = &interfaces(&data)[0];
        assert_eq!(eth0["mac"], "0c:c4:7a:03:24:fb");
        assert_eq!(eth0["up"], true);
        assert_eq!(eth0["mtu_bytes"], 1500);
        assert_eq!(eth0["speed_mbps"], 1000);
        assert!(data["reasons"]["source"].is_string());
    }

    #[test]
    fn text_fallback_matches_json_real_netns_recording() {
        let from_json = parse_ip_addr(
            include_str!("../fixtures/netns-bridge-veth/ip-d-addr.json"),
            &BTreeMap::new(),
            &Filter::default(),
        )
        .expect("parses");
        let from_text = interfaces_of(
            &parse_ip_text(include_str!("../fixtures/netns-bridge-veth/ip-text.txt")),
            &BTreeMap::new(),
            &Filter::default(),
        );
        assert_eq!(from_text, from_json);
        let with_veth = Filter {
            include_veth: true,
            ..Filter::default()
        };
        let from_text = interfaces_of(
            &parse_ip_text(include_str!("../fixtures/netns-bridge-veth/ip-text.txt")),
            &BTreeMap::new(),
            &with_veth,
        );
        assert_eq!(from_text.len(), 4);
    }

    #[test]
    fn speeds_from_grep_name_each_interface_and_drop_unknown_values() {
        let speeds = parse_speeds(
            "/sys/class/net/eth0/speed:1000\n/sys/class/net/br0/speed:-1\n/sys/class/net/ens5f1/speed:25000\n",
        );
        assert_eq!(speeds.get("eth0"), Some(&Some(1000)));
        assert_eq!(speeds.get("br0"), Some(&None));
        assert_eq!(speeds.get("ens5f1"), Some(&Some(25000)));
        assert_eq!(speeds.len(), 3);
    }

    #[test]
    #[ignore = "reads this machine: cargo test -p collector-nic -- --ignored"]
    fn live_this_machine() {
        let data = FixtureExecutor::new("local")
            .record_command(IP_ADDR)
            .record_command(SPEEDS)
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        println!("{data:#}");
        plugin_api::data::validate(&data, &Default::default()).expect("valid");
        // Every listed interface is one of /sys/class/net with its MTU and MAC; every interface
        // with a device behind it (hardware, virtio) is listed.
        let sys = |name: &str, f: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{name}/{f}"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let mut listed = 0;
        for i in interfaces(&data) {
            let name = i["name"].as_str().expect("name");
            assert_ne!(name, "lo");
            assert_eq!(
                i["mtu_bytes"].as_u64(),
                sys(name, "mtu").parse().ok(),
                "{name}"
            );
            let addr = sys(name, "address");
            if i["permanent_mac"].is_null() && !addr.is_empty() && addr != "00:00:00:00:00:00" {
                assert_eq!(i["mac"], addr.as_str(), "{name}");
            }
            listed += 1;
        }
        for entry in std::fs::read_dir("/sys/class/net")
            .expect("/sys/class/net")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join("device").exists() {
                assert!(
                    interfaces(&data).iter().any(|i| i["name"] == name.as_str()),
                    "{name} is listed"
                );
            }
        }
        assert!(listed > 0, "this machine has a network interface");
    }
}
