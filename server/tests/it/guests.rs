//! A virtual machine linked to its hypervisor host (issue 11): the hypervisor's `virt.guests` list
//! (the virt collector's recorded output on a libvirt host) names a guest by its SMBIOS system
//! UUID, the guest's own report declares that UUID; the host API and the host pages show both
//! links, and removing the guest from the list removes them.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{golden, random_hex, Backend, Machine, Server};

/// A hypervisor whose guest list is the recorded libvirt host's, its first guest given `uuid`.
fn hypervisor(hostname: &str, uuid: &str) -> Machine {
    let mut hv = Machine::new(hostname);
    hv.data
        .insert("virt".into(), golden("virt", "libvirt-host"));
    let part = &mut hv.parts_mut("virt", "guests")[0];
    part["id"] = json!(uuid);
    part["system_uuid"] = json!(uuid);
    hv
}

/// The bytes of the first three fields reversed (the other SMBIOS byte order).
fn byte_swapped(u: &str) -> String {
    let f: Vec<&str> = u.split('-').collect();
    let rev = |s: &str| -> String {
        (0..s.len())
            .step_by(2)
            .rev()
            .map(|i| &s[i..i + 2])
            .collect()
    };
    format!(
        "{}-{}-{}-{}-{}",
        rev(f[0]),
        rev(f[1]),
        rev(f[2]),
        f[3],
        f[4]
    )
}

/// A logged-in reader of the pages: `auto-server users add`, then the login form over HTTP.
struct Pages {
    base: String,
    session: String,
}

impl Pages {
    fn login(s: &Server) -> Pages {
        let password = random_hex(12);
        crate::ui::add_user(s, "reader", "viewer", &password);
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(30))
            .build();
        let cookie = |r: &ureq::Response, name: &str| -> String {
            r.all("set-cookie")
                .into_iter()
                .find_map(|c| c.strip_prefix(&format!("{name}=")))
                .and_then(|c| c.split(';').next())
                .unwrap_or_else(|| panic!("no {name} cookie"))
                .to_owned()
        };
        let form = agent
            .get(&format!("{}/ui/login", s.base))
            .call()
            .expect("login form");
        let csrf = cookie(&form, "auto_login");
        let r = match agent
            .post(&format!("{}/ui/login", s.base))
            .set("cookie", &format!("auto_login={csrf}"))
            .send_form(&[
                ("user", "reader"),
                ("password", &password),
                ("csrf", &csrf),
                ("next", "/ui/"),
            ]) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("login: {e}"),
        };
        assert_eq!(r.status(), 303, "login refused");
        Pages {
            base: s.base.clone(),
            session: cookie(&r, "auto_session"),
        }
    }

    fn host(&self, hostname: &str) -> String {
        let r = ureq::get(&format!("{}/ui/hosts/{hostname}", self.base))
            .set("cookie", &format!("auto_session={}", self.session))
            .call()
            .expect("host page");
        assert_eq!(r.status(), 200);
        r.into_string().expect("html")
    }
}

fn guest_and_hypervisor_link_both_ways(b: Backend) {
    let s = Server::start(b);
    let guest = Machine::new("guest-1");
    let mut hv = hypervisor("hv-1", &guest.uuid);
    let plain = Machine::new("plain-1");
    for m in [&hv, &guest, &plain] {
        let a = s.report(&m.report(None));
        assert_eq!(a.status, 201, "{}: {:?}", m.hostname, a.body);
    }

    let g = s.get("/api/v1/hosts/guest-1").body;
    assert_eq!(
        g["hypervisor"],
        json!({"hostname": "hv-1", "guest_name": "QEMUGuest1", "state": "running", "uuid_match": "exact"})
    );
    assert_eq!(
        g["guests_in_cmdb"],
        Value::Null,
        "the guest has no guest list"
    );
    let h = s.get("/api/v1/hosts/hv-1").body;
    assert_eq!(h["hypervisor"], Value::Null);
    assert_eq!(
        h["guests_in_cmdb"],
        json!([{"system_uuid": guest.uuid, "hostname": "guest-1", "guest_name": "QEMUGuest1",
                "state": "running", "uuid_match": "exact"}])
    );
    // The other guest of the list (`upstream`) is not a host here; a host with no list at all
    // has no `guests_in_cmdb`.
    let p = s.get("/api/v1/hosts/plain-1").body;
    assert_eq!(
        (&p["hypervisor"], &p["guests_in_cmdb"]),
        (&Value::Null, &Value::Null)
    );

    let pages = Pages::login(&s);
    let page = pages.host("guest-1");
    assert!(
        page.contains(r#"Runs on <a href="/ui/hosts/hv-1">hv-1</a>"#),
        "{page}"
    );
    let page = pages.host("hv-1");
    assert!(
        page.contains(r#"<li><a href="/ui/hosts/guest-1">guest-1</a> (QEMUGuest1, running)</li>"#),
        "{page}"
    );
    assert!(!page.contains("Runs on"));

    // A list the hypervisor could not see keeps its parts, and so the link.
    let mut unseen = hv.clone();
    unseen.data.get_mut("virt").expect("virt")["lists"]["guests"] =
        json!({"unavailable": "/etc/libvirt/qemu: permission denied (needs root)"});
    assert_eq!(s.report(&unseen.report(Some("hv-1"))).status, 200);
    assert_eq!(
        s.get("/api/v1/hosts/guest-1").body["hypervisor"]["hostname"],
        "hv-1"
    );

    // The guest leaves the hypervisor's list: both links are gone.
    hv.parts_mut("virt", "guests").remove(0);
    assert_eq!(s.report(&hv.report(Some("hv-1"))).status, 200);
    assert_eq!(
        s.get("/api/v1/hosts/guest-1").body["hypervisor"],
        Value::Null
    );
    assert_eq!(
        s.get("/api/v1/hosts/hv-1").body["guests_in_cmdb"],
        json!([])
    );
    assert!(!pages.host("guest-1").contains("Runs on"));
    assert!(!pages.host("hv-1").contains("/ui/hosts/guest-1"));
}

fn a_byte_swapped_uuid_matches_and_says_so(b: Backend) {
    let s = Server::start(b);
    let listed = "c7a5fdbd-edaf-9455-926a-d65c16db1809";
    let hv = hypervisor("hv-2", listed);
    let mut guest = Machine::new("old-bios-guest");
    guest.uuid = byte_swapped(listed);
    assert_eq!(guest.uuid, "bdfda5c7-afed-5594-926a-d65c16db1809");
    for m in [&hv, &guest] {
        assert_eq!(s.report(&m.report(None)).status, 201);
    }
    let g = s.get("/api/v1/hosts/old-bios-guest").body;
    assert_eq!(g["hypervisor"]["hostname"], "hv-2");
    assert_eq!(g["hypervisor"]["uuid_match"], "byte_swapped");
    let h = s.get("/api/v1/hosts/hv-2").body;
    assert_eq!(h["guests_in_cmdb"][0]["hostname"], "old-bios-guest");
    assert_eq!(h["guests_in_cmdb"][0]["system_uuid"], listed);
    assert_eq!(h["guests_in_cmdb"][0]["uuid_match"], "byte_swapped");
}

crate::both!(
    guest_and_hypervisor_link_both_ways,
    a_byte_swapped_uuid_matches_and_says_so
);
