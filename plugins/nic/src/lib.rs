//! The `nic` collector: network interfaces with MAC, state, MTU, speed, driver, firmware,
//! membership and addresses.
//!
//! Two commands on the target: one `sh` line for sysfs and ethtool (see [`SYSFS`]: shell builtins
//! read every `/sys/class/net/*/speed` and the `DRIVER=` line of every `device/uevent`, then
//! `ethtool -i` for each interface with a device behind it, where ethtool is installed), and
//! `ip -d -j addr` (an iproute2 with JSON output; `-d` adds the link kind, bond/bridge/VLAN data;
//! where it fails, a third: `ip -d -o link show` and `ip -o addr show` in one line, read as text).
//!
//! Which interfaces are listed, by what an interface is, where that is known:
//! - the loopback is left out (by name, `link_type` or the `LOOPBACK` flag);
//! - a veth is left out when it is the host's end of a container's link: a port of a bridge or
//!   OVS (it has a `master`: docker0, cni0, ...), a veth holding no address but link-local ones
//!   (calico's `cali*`, cilium's `lxc*`), or any veth where an interface of the same namespace is
//!   backed by a device (a `DRIVER=` in sysfs, or iproute2's `parentbus`): that is a host, and
//!   routed setups (CNI ptp) give the host's end an address. These come and go with every
//!   container and would flood the change log. Inside a container (or a network namespace)
//!   `eth0` is a veth with an address and no device beside it: that machine's uplink, kept;
//! - every other interface is kept (bonds and their slaves, VLANs, bridges, tunnels, tun: the
//!   CMDB sees what the host sees).
//!
//! Options: `include_veth = true` keeps every veth, `exclude_prefixes = ["docker", "br-"]` leaves
//! out interfaces whose name starts so.
//!
//! Its data (report schema 2) is the part list `interfaces`, keyed by `["permanent_mac", "name"]`:
//! an interface's id is its permanent MAC where iproute2 shows one (`permaddr`, which stays when a
//! bond or a user changes the address), else its name. Attributes:
//! - `name`, `mtu_bytes`, `speed_mbps`, `addresses` (`[{address, prefix_len}]`, IPv4 and IPv6,
//!   link-local ones included, in iproute2's order);
//! - `mac`: the permanent address where iproute2 shows one, else `address`; only for link types
//!   that have a link-layer address (ether, infiniband, ...): `null` for tunnels whose `address`
//!   is an IP address (`sit`, `ipip`, `gre`, `ip6tnl`) and for interfaces without one (tun,
//!   wireguard); `permanent_mac`: `permaddr` (a bond slave's own MAC), else `null`;
//! - `admin_up`: the `UP` flag (set up by the administrator); `oper_state`: the kernel's
//!   operational state in lower case (`up`, `down`, `lowerlayerdown`, `dormant`, `unknown`: what
//!   virtual and tunnel devices report); `up`: admin up with a carrier (`UP` and `LOWER_UP`), kept
//!   as it was so that an admin-up port without a cable reads `up: false`, `admin_up: true`;
//! - `kind`: the link kind of `-d` (`bond`, `bridge`, `vlan`, `veth`, `sit`, `tun`, `wireguard`,
//!   ...), `null` for a plain device; `master`: the bond or bridge it is enslaved to;
//!   `slave_kind`: what that master is (`bond`, `bridge`); `vlan_id` and `parent` (the link a
//!   VLAN rides on);
//! - `driver` (the `DRIVER=` of sysfs `device/uevent`, else ethtool's), `driver_version` and
//!   `firmware_version` (ethtool -i; `null` where ethtool is absent or says `N/A`).
//!
//! `speed_mbps` is `null` where `/sys/class/net/IFACE/speed` cannot be read (interface down,
//! virtual device) or says `-1` (virtio and most virtual drivers). A missing ethtool or sysfs
//! degrades to `null` with a reason, never to an error.

use std::{collections::BTreeMap, time::Duration};

use plugin_api::{
    export_collector,
    serde_json::{self, json, Map, Value},
    CollectError, Data, Target,
};

const IP_ADDR: &str = "ip -d -j addr";
/// The same facts as text, for an iproute2 without JSON output (e.g. CentOS 7's 4.11).
const IP_TEXT: &str = "ip -d -o link show && echo '==> addresses' && ip -o addr show";
/// Prints `/sys/class/net/NAME/speed:SPEED` and `/sys/class/net/NAME/device/uevent:DRIVER=...`
/// lines (what `grep -H` of those files printed) with shell builtins only: no process at all (a
/// loop forking `cat` per interface cost ~1 ms an interface, one `grep` ~1.5 ms); an interface
/// whose speed cannot be read (down, virtual: the read fails with EINVAL) is simply absent. Then,
/// where ethtool is installed, `==> ethtool NAME` and `ethtool -i NAME` for each interface with a
/// device (hardware, virtio): one process a NIC, none for virtual devices; `==> no ethtool` where
/// it is not.
pub const SYSFS: &str = "PATH=\"$PATH:/usr/sbin:/sbin\"; \
    for f in /sys/class/net/*/speed; do { read -r v < \"$f\"; } 2>/dev/null && \
    case $v in [0-9]*|-[0-9]*) printf '%s:%s\\n' \"$f\" \"$v\";; esac; done; \
    for f in /sys/class/net/*/device/uevent; do [ -r \"$f\" ] || continue; \
    while IFS= read -r l; do case $l in DRIVER=*) printf '%s:%s\\n' \"$f\" \"$l\";; esac; done < \"$f\"; done; \
    if command -v ethtool >/dev/null 2>&1; then for d in /sys/class/net/*/device; do \
    [ -e \"$d\" ] || continue; n=${d%/device}; n=${n##*/}; printf '==> ethtool %s\\n' \"$n\"; \
    ethtool -i \"$n\" 2>/dev/null; done; else echo '==> no ethtool'; fi; true";
/// Below the host's default collector timeout (10 s), so that the executor kills a hung command
/// and this collector reports it before the host gives up on the whole collector.
const TIMEOUT: Duration = Duration::from_secs(8);

/// One network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// `permaddr`, where iproute2 shows it.
    pub permanent_mac: Option<String>,
    /// `UP` and `LOWER_UP`.
    pub up: bool,
    /// `UP`.
    pub admin_up: bool,
    /// `operstate`, lower case.
    pub oper_state: Option<String>,
    pub mtu: Option<u64>,
    pub speed_mbps: Option<u64>,
    pub kind: Option<String>,
    pub master: Option<String>,
    pub slave_kind: Option<String>,
    pub vlan_id: Option<u64>,
    pub parent: Option<String>,
    pub driver: Option<String>,
    pub driver_version: Option<String>,
    pub firmware_version: Option<String>,
    pub addresses: Vec<(String, Option<u64>)>,
}

impl Interface {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "mac": self.mac,
            "permanent_mac": self.permanent_mac,
            "up": self.up,
            "admin_up": self.admin_up,
            "oper_state": self.oper_state,
            "mtu_bytes": self.mtu,
            "speed_mbps": self.speed_mbps,
            "kind": self.kind,
            "master": self.master,
            "slave_kind": self.slave_kind,
            "vlan_id": self.vlan_id,
            "parent": self.parent,
            "driver": self.driver,
            "driver_version": self.driver_version,
            "firmware_version": self.firmware_version,
            "addresses": self
                .addresses
                .iter()
                .map(|(a, p)| json!({ "address": a, "prefix_len": p }))
                .collect::<Vec<_>>(),
        })
    }
}

/// The speeds printed by [`SYSFS`] (or `NAME SPEED` lines, `-` for unknown): name to Mb/s,
/// `None` where unknown.
pub fn parse_speeds(stdout: &str) -> BTreeMap<String, Option<u64>> {
    // The ethtool sections come after the speeds.
    stdout
        .lines()
        .take_while(|line| !line.starts_with("==> "))
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

/// What [`SYSFS`] says of one interface besides its speed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    pub driver: Option<String>,
    pub driver_version: Option<String>,
    pub firmware_version: Option<String>,
}

/// The drivers (`device/uevent`) and `ethtool -i` answers printed by [`SYSFS`], by interface;
/// and whether ethtool was there.
pub fn parse_devices(stdout: &str) -> (BTreeMap<String, DeviceInfo>, bool) {
    let mut devices: BTreeMap<String, DeviceInfo> = BTreeMap::new();
    let mut ethtool = true;
    let mut current: Option<String> = None;
    let value = |v: &str| {
        let v = v.trim();
        (!v.is_empty() && v != "N/A" && v != "n/a").then(|| v.to_string())
    };
    for line in stdout.lines() {
        if line.trim() == "==> no ethtool" {
            ethtool = false;
            current = None;
        } else if let Some(name) = line.strip_prefix("==> ethtool ") {
            current = Some(name.trim().to_string());
            devices.entry(name.trim().to_string()).or_default();
        } else if let Some(rest) = line.strip_prefix("/sys/class/net/") {
            current = None;
            let Some((path, v)) = rest.split_once(':') else {
                continue;
            };
            if let (Some(name), Some(driver)) = (
                path.strip_suffix("/device/uevent"),
                v.strip_prefix("DRIVER="),
            ) {
                devices.entry(name.to_string()).or_default().driver = value(driver);
            }
        } else if let Some(name) = &current {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let d = devices.entry(name.clone()).or_default();
            match k.trim() {
                "driver" if d.driver.is_none() => d.driver = value(v),
                "version" => d.driver_version = value(v),
                "firmware-version" => d.firmware_version = value(v),
                _ => {}
            }
        }
    }
    (devices, ethtool)
}

/// Link types whose `address` is no link-layer address (an IP address, or nothing).
const NO_LINK_LAYER: [&str; 12] = [
    "loopback", "none", "sit", "ipip", "gre", "ip6gre", "tunnel6", "ip6tnl", "void", "can", "ppp",
    "ipip6",
];

/// `text` when it is a link-layer address (`aa:bb:cc:dd:ee:ff`, a 20-byte InfiniBand one): hex
/// byte pairs joined by `:`, at least six.
fn link_layer_address(text: &str) -> Option<String> {
    let bytes: Vec<&str> = text.split(':').collect();
    (bytes.len() >= 6
        && bytes
            .iter()
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit())))
    .then(|| text.to_ascii_lowercase())
}

/// The MAC of a link: `permaddr`, else `address`, where the link type has link-layer addresses.
fn mac_of(link: &Value, key: &str) -> Option<String> {
    let link_type = link.get("link_type").and_then(Value::as_str);
    if link_type.is_some_and(|t| NO_LINK_LAYER.contains(&t)) {
        return None;
    }
    link.get(key)
        .and_then(Value::as_str)
        .and_then(link_layer_address)
}

fn linkinfo<'a>(link: &'a Value, key: &str) -> Option<&'a str> {
    link.get("linkinfo")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
}

/// Whether a link holds an address other than a link-local one.
fn has_routable_address(link: &Value) -> bool {
    link.get("addr_info")
        .and_then(Value::as_array)
        .is_some_and(|infos| {
            infos.iter().any(|i| {
                i.get("local").and_then(Value::as_str).is_some_and(|a| {
                    let a = a.to_ascii_lowercase();
                    !a.starts_with("fe80:") && !a.starts_with("169.254.")
                })
            })
        })
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

    /// `host`: an interface of this network namespace is backed by a device (a physical or
    /// virtio NIC): this is a host, where every veth is the host's end of a container's link.
    fn keeps(&self, name: &str, link: &Value, host: bool) -> bool {
        let loopback = name == "lo"
            || link.get("link_type").and_then(Value::as_str) == Some("loopback")
            || has_flag(link, "LOOPBACK");
        // The host's end of a container's link: a bridge/OVS port, a veth without a routable
        // address, or any veth beside a device-backed NIC (routed setups such as CNI ptp give
        // the host's end an address).
        let veth = linkinfo(link, "info_kind") == Some("veth")
            && (host
                || link.get("master").and_then(Value::as_str).is_some()
                || !has_routable_address(link));
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
    Ok(interfaces_of(&links, speeds, &BTreeMap::new(), filter))
}

/// The interfaces of iproute2's JSON links (or of [`parse_ip_text`]'s), filtered.
fn interfaces_of(
    links: &[Value],
    speeds: &BTreeMap<String, Option<u64>>,
    devices: &BTreeMap<String, DeviceInfo>,
    filter: &Filter,
) -> Vec<Interface> {
    // Known from sysfs (a `DRIVER=` of device/uevent) or iproute2's `parentbus` (5.x and later);
    // unknown (false) where neither says.
    let host = devices.values().any(|d| d.driver.is_some())
        || links.iter().any(|l| l.get("parentbus").is_some());
    let mut interfaces = Vec::new();
    for link in links {
        // Old iproute2 (4.x) adds empty `{}` entries to the list: skip anything without a name.
        let Some(name) = link.get("ifname").and_then(Value::as_str) else {
            continue;
        };
        if !filter.keeps(name, link, host) {
            continue;
        }
        let permanent_mac = mac_of(link, "permaddr");
        let mac = permanent_mac.clone().or_else(|| mac_of(link, "address"));
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
        let kind = linkinfo(link, "info_kind").map(str::to_string);
        let vlan_id = link
            .get("linkinfo")
            .and_then(|l| l.get("info_data"))
            .and_then(|d| d.get("id"))
            .and_then(Value::as_u64)
            .filter(|_| kind.as_deref() == Some("vlan"));
        // `link` is a VLAN's (macvlan's, ...) parent; a veth's is its peer: not a parent.
        let parent = link
            .get("link")
            .and_then(Value::as_str)
            .filter(|_| {
                matches!(
                    kind.as_deref(),
                    Some("vlan" | "macvlan" | "macvtap" | "ipvlan" | "vxlan")
                )
            })
            .map(str::to_string);
        let device = devices.get(name).cloned().unwrap_or_default();
        interfaces.push(Interface {
            name: name.to_string(),
            mac,
            permanent_mac,
            up: has_flag(link, "UP") && has_flag(link, "LOWER_UP"),
            admin_up: has_flag(link, "UP"),
            oper_state: link
                .get("operstate")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase),
            mtu: link.get("mtu").and_then(Value::as_u64),
            speed_mbps: speeds.get(name).copied().flatten(),
            kind,
            master: link
                .get("master")
                .and_then(Value::as_str)
                .map(str::to_string),
            slave_kind: linkinfo(link, "info_slave_kind").map(str::to_string),
            vlan_id,
            parent,
            driver: device.driver,
            driver_version: device.driver_version,
            firmware_version: device.firmware_version,
            addresses,
        });
    }
    interfaces
}

/// The link kinds the text of `ip -d -o link` names at the head of a detail segment.
const TEXT_KINDS: [&str; 20] = [
    "veth",
    "bridge",
    "bond",
    "vlan",
    "macvlan",
    "macvtap",
    "ipvlan",
    "vxlan",
    "ifb",
    "tun",
    "dummy",
    "team",
    "sit",
    "gre",
    "ipip",
    "ip6tnl",
    "wireguard",
    "geneve",
    "vrf",
    "openvswitch",
];

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
        let (name, at) = name.split_once('@').unwrap_or((name, ""));
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
        // Before the `link/` part: `... master bond0 state UP ...`.
        let head = link_pos.map(|i| &words[..i]).unwrap_or(&words[..]);
        let head_after = |key: &str| {
            head.iter()
                .position(|w| *w == key)
                .and_then(|i| head.get(i + 1).copied())
        };
        if let Some(master) = head_after("master") {
            link["master"] = json!(master);
        }
        if let Some(state) = head_after("state") {
            link["operstate"] = json!(state);
        }
        // `-d` puts each detail in a `\`-separated segment after the `link/` one: its first word
        // is the kind (`veth`, `vlan protocol 802.1Q id 700 ...`, `bond mode ...`) or the slave
        // kind (`bridge_slave state ...`, `bond_slave state ...`).
        let mut info = Map::new();
        for segment in line.split('\\').skip(2) {
            let seg: Vec<&str> = segment.split_whitespace().collect();
            let Some(first) = seg.first() else { continue };
            if let Some(slave) = first.strip_suffix("_slave") {
                info.insert("info_slave_kind".into(), json!(slave));
            } else if TEXT_KINDS.contains(first) && !info.contains_key("info_kind") {
                info.insert("info_kind".into(), json!(first));
                if *first == "vlan" {
                    let id = seg
                        .iter()
                        .position(|w| *w == "id")
                        .and_then(|i| seg.get(i + 1))
                        .and_then(|id| id.parse::<u64>().ok());
                    info.insert("info_data".into(), json!({ "id": id }));
                }
            }
        }
        if !at.is_empty() && !at.starts_with("if") {
            link["link"] = json!(at);
        }
        if !info.is_empty() {
            link["linkinfo"] = Value::Object(info);
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
    // sysfs first: a command whatever `ip` gives, so that a dry run (salt mode's) learns it.
    let (speeds, devices) = match target.run_ok(SYSFS, TIMEOUT) {
        Ok(out) => {
            let (devices, ethtool) = parse_devices(&out);
            if !ethtool {
                for field in ["driver_version", "firmware_version"] {
                    reasons.insert(field.into(), json!("ethtool is not installed"));
                }
            }
            (parse_speeds(&out), devices)
        }
        Err(e) => {
            for field in ["speed_mbps", "driver", "driver_version", "firmware_version"] {
                reasons.insert(field.into(), json!(format!("sysfs unreadable: {e}")));
            }
            (BTreeMap::new(), BTreeMap::new())
        }
    };
    // JSON first; the text form where this iproute2 has no JSON or prints a broken one. A
    // successful answer with nothing in it lists no interface: not a reason for the fallback (the
    // host's dry run answers so, and must learn only the primary; see host/src/remote/learn.rs).
    let links = match target.run_ok(IP_ADDR, TIMEOUT).and_then(|out| {
        if out.trim().is_empty() {
            return Ok(Vec::new());
        }
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
    let interfaces = interfaces_of(&links, &speeds, &devices, &filter);
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
    description = "network interfaces: MAC, states, MTU, speed, driver, firmware, membership, addresses (iproute2, sysfs, ethtool)",
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
            exec = exec.command(SYSFS, s);
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
                    .command(SYSFS, &read("firecracker-vm", "sysfs.txt")),
            ),
            (
                // A container's own view: its eth0 is a veth, and its uplink.
                "container-eth0-veth",
                FixtureExecutor::new("ctr")
                    .command(IP_ADDR, &read("container-eth0-veth", "ip-d-addr.json"))
                    .command(SYSFS, &read("container-eth0-veth", "sysfs.txt")),
            ),
            (
                "netplan-laptop-sit",
                FixtureExecutor::new("laptop")
                    .command(IP_ADDR, &read("netplan-laptop-sit", "ip-d-addr.json"))
                    .command(SYSFS, ""),
            ),
            (
                "vagrant-vlan",
                FixtureExecutor::new("vagrant")
                    .command_output(IP_ADDR, "", "Option \"-j\" is unknown\n", Some(255))
                    .command(IP_TEXT, &read("vagrant-vlan", "ip-d-o-link-adapted.txt"))
                    .command(SYSFS, ""),
            ),
            (
                "netns-bridge-veth",
                FixtureExecutor::new("netns")
                    .command(IP_ADDR, &read("netns-bridge-veth", "ip-d-addr.json"))
                    .command(SYSFS, &read("netns-bridge-veth", "speeds.txt")),
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
                    .command(SYSFS, "eth0 1000\neth1 1000\n"),
            ),
            (
                "iproute2-brief-lo",
                FixtureExecutor::new("brief")
                    .command(IP_ADDR, &read("iproute2-brief-lo", "ip-json-brief.json"))
                    .command(SYSFS, ""),
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
    fn a_containers_eth0_veth_is_its_uplink_real_recording() {
        // Issue 14: inside a container eth0 is a veth; it was left out, leaving no interface.
        let data = FixtureExecutor::new("ctr")
            .command(
                IP_ADDR,
                include_str!("../fixtures/container-eth0-veth/ip-d-addr.json"),
            )
            .command(
                SYSFS,
                include_str!("../fixtures/container-eth0-veth/sysfs.txt"),
            )
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(names(&data), ["eth0"]);
        let eth0 = &interfaces(&data)[0];
        assert_eq!(eth0["kind"], "veth");
        assert_eq!(eth0["master"], Value::Null);
        assert_eq!(eth0["parent"], Value::Null, "a veth's link is its peer");
        assert_eq!(eth0["speed_mbps"], 10000);
        assert_eq!(eth0["addresses"][0]["address"], "172.18.0.2");
        assert_eq!(
            data["reasons"]["firmware_version"],
            "ethtool is not installed"
        );
        // The host's side of the same link, recorded in the same session: the bridge port is
        // plumbing, the bridge is kept.
        let host = parse_ip_addr(
            include_str!("../fixtures/container-eth0-veth/host-ip-d-addr.json"),
            &BTreeMap::new(),
            &Filter::default(),
        )
        .expect("parses");
        let host_names: Vec<_> = host.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(host_names, ["br0"]);
    }

    #[test]
    fn a_routed_hosts_veth_with_an_address_is_left_out_beside_a_device() {
        // The container's recording with a device-backed NIC beside it (as on a host whose CNI
        // gives the host's end an address): the veth is plumbing there.
        let ip = include_str!("../fixtures/container-eth0-veth/ip-d-addr.json");
        let mut links: Vec<Value> = serde_json::from_str(ip).expect("json");
        let devices = BTreeMap::from([(
            "eno1".to_string(),
            DeviceInfo {
                driver: Some("ixgbe".into()),
                ..DeviceInfo::default()
            },
        )]);
        let kept = interfaces_of(&links, &BTreeMap::new(), &devices, &Filter::default());
        assert!(kept.is_empty(), "{kept:?}");
        // The same with iproute2's parentbus on another link.
        links.push(json!({"ifname": "eno1", "parentbus": "pci", "link_type": "ether", "address": "aa:bb:cc:00:00:01"}));
        let kept = interfaces_of(
            &links,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &Filter::default(),
        );
        let names: Vec<_> = kept.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eno1"]);
    }

    #[test]
    fn sit_tunnel_has_no_mac_real_netplan_recording() {
        let data = run(
            include_str!("../fixtures/netplan-laptop-sit/ip-d-addr.json"),
            Some(""),
        )
        .expect("collects");
        let by_name = |n: &str| {
            interfaces(&data)
                .iter()
                .find(|i| i["name"] == n)
                .cloned()
                .unwrap_or_else(|| panic!("{n} listed"))
        };
        let tun0 = by_name("tun0");
        assert_eq!(tun0["mac"], Value::Null, "its address is 1.1.1.1");
        assert_eq!(tun0["kind"], "sit");
        assert_eq!(tun0["oper_state"], "unknown");
        assert_eq!(by_name("wg0")["mac"], Value::Null);
        assert_eq!(by_name("tun1")["kind"], "tun");
        let wwan0 = by_name("wwan0");
        assert_eq!(wwan0["mac"], "a2:23:44:c4:4e:f8");
        assert_eq!(wwan0["admin_up"], false);
        assert_eq!(wwan0["oper_state"], "down");
        let eth = by_name("enp0s31f6");
        assert_eq!(eth["admin_up"], true);
        assert_eq!(eth["oper_state"], "up");
        assert_eq!(eth["kind"], Value::Null);
    }

    #[test]
    fn admin_up_without_carrier() {
        // Synthetic: an admin-up port without a cable.
        let ip = r#"[{"ifname":"eno2","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP"],"mtu":1500,"operstate":"DOWN","link_type":"ether","address":"aa:bb:cc:00:00:02","addr_info":[]}]"#;
        let ifaces = parse_ip_addr(ip, &BTreeMap::new(), &Filter::default()).expect("parses");
        assert!(ifaces[0].admin_up);
        assert!(!ifaces[0].up);
        assert_eq!(ifaces[0].oper_state.as_deref(), Some("down"));
    }

    #[test]
    fn vlan_from_the_text_of_ip_d_link_real_vagrant_transcript() {
        let data = FixtureExecutor::new("t")
            .command_output(IP_ADDR, "", "Option \"-j\" is unknown\n", Some(255))
            .command(
                IP_TEXT,
                include_str!("../fixtures/vagrant-vlan/ip-d-o-link-adapted.txt"),
            )
            .command(SYSFS, "")
            .with_target(|t| collect(t, &json!({})))
            .expect("collects");
        assert_eq!(names(&data), ["eth0", "eth0.700"]);
        let vlan = &interfaces(&data)[1];
        assert_eq!(vlan["kind"], "vlan");
        assert_eq!(vlan["vlan_id"], 700);
        assert_eq!(vlan["parent"], "eth0");
        assert_eq!(vlan["mac"], "08:00:27:73:60:cf");
        assert_eq!(vlan["oper_state"], "down");
    }

    #[test]
    fn ethtool_and_uevent_give_driver_and_firmware() {
        // `ethtool -i` lines of an ixgbe and a tg3 NIC as published in two public notes (see
        // plugins/fixtures.md), behind the sysfs lines the script prints.
        let out = "/sys/class/net/eth4/speed:10000\n/sys/class/net/eth4/device/uevent:DRIVER=ixgbe\n\
                   /sys/class/net/eth0/device/uevent:DRIVER=tg3\n\
                   ==> ethtool eth0\ndriver: tg3\nversion: 5.10.0-30-2-amd64\nfirmware-version: sb\nbus-info: 0000:02:00.0\n\
                   ==> ethtool eth4\ndriver: ixgbe\nversion: 5.3.7\nfirmware-version: 0x800003df, 255.65535.255\nexpansion-rom-version:\nbus-info: 0000:01:00.0\n\
                   ==> ethtool virt0\ndriver: virtio_net\nversion: 1.0.0\nfirmware-version: \n";
        let (devices, ethtool) = parse_devices(out);
        assert!(ethtool);
        assert_eq!(devices["eth4"].driver.as_deref(), Some("ixgbe"));
        assert_eq!(
            devices["eth4"].firmware_version.as_deref(),
            Some("0x800003df, 255.65535.255")
        );
        assert_eq!(
            devices["eth0"].driver_version.as_deref(),
            Some("5.10.0-30-2-amd64")
        );
        assert_eq!(devices["eth0"].firmware_version.as_deref(), Some("sb"));
        // No uevent line: ethtool's driver; an empty firmware: null.
        assert_eq!(devices["virt0"].driver.as_deref(), Some("virtio_net"));
        assert_eq!(devices["virt0"].firmware_version, None);
        assert_eq!(parse_speeds(out).get("eth4"), Some(&Some(10000)));
        assert_eq!(parse_speeds(out).len(), 1);
    }

    #[test]
    fn bridge_kept_veth_port_left_out_real_netns_recording() {
        let ip = include_str!("../fixtures/netns-bridge-veth/ip-d-addr.json");
        let speeds = include_str!("../fixtures/netns-bridge-veth/speeds.txt");
        let data = run(ip, Some(speeds)).expect("collects");
        // veth0a is br0's port (plumbing); veth0b holds 10.9.0.2: an uplink, kept.
        assert_eq!(names(&data), ["br0", "veth0b", "ifb0"]);
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
        assert_eq!(names(&data), ["br0", "veth0b"]);

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
        // The bond's slaves name their master.
        assert_eq!(ifaces[0]["master"], "bond0");
        assert_eq!(ifaces[1]["master"], "bond0");
        assert_eq!(ifaces[2]["master"], Value::Null);
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
            .command(SYSFS, "")
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
    fn an_empty_successful_answer_lists_nothing_and_asks_no_fallback() {
        // What the host's dry run answers: the text fallback must not be asked (it is not in
        // this fixture, so asking it would fail the collector).
        let data = FixtureExecutor::new("t")
            .command(SYSFS, "")
            .command(IP_ADDR, "")
            .with_target(|t| collect(t, &json!({})))
            .expect("an empty list, no fallback");
        assert_eq!(interfaces(&data).len(), 0, "{data}");
        assert!(data["reasons"].get("source").is_none(), "{data}");
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
            .command(SYSFS, "eth0 1000\neth1 1000\n")
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
            .record_command(SYSFS)
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
            // ARPHRD_ETHER (1) and ARPHRD_INFINIBAND (32) have link-layer addresses; a tunnel's
            // (sit 776, ipip 768, gre 778) or none's (65534) address is no MAC.
            let link_layer = matches!(sys(name, "type").as_str(), "1" | "32");
            if !link_layer {
                assert_eq!(i["mac"], Value::Null, "{name}");
            } else if i["permanent_mac"].is_null() && !addr.is_empty() {
                assert_eq!(i["mac"], addr.as_str(), "{name}");
            }
            // Admin state from IFF_UP of sysfs `flags`, operational state from `operstate`.
            let flags = u64::from_str_radix(sys(name, "flags").trim_start_matches("0x"), 16)
                .expect("flags");
            assert_eq!(i["admin_up"], flags & 1 == 1, "{name}");
            assert_eq!(i["oper_state"], sys(name, "operstate").as_str(), "{name}");
            // The driver the device is bound to, as its sysfs link names it.
            let driver = std::fs::read_link(format!("/sys/class/net/{name}/device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
            assert_eq!(i["driver"].as_str(), driver.as_deref(), "{name}");
            // The master it is enslaved to, as sysfs links it.
            let master = std::fs::read_link(format!("/sys/class/net/{name}/master"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
            assert_eq!(i["master"].as_str(), master.as_deref(), "{name}");
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
