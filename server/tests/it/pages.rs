//! The pages' door and the feeds' paging over plain HTTP (no browser): the login rate limit, CSRF
//! refusals that change nothing, the session cookie's flags, agent keys refused on the pages,
//! moved parts, and cursor paging over the inventory and the change feed while reports arrive.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::both;
use crate::support::{now, random_hex, Backend, Machine, Server};
use crate::ui::add_user;

/// An HTTP answer with the headers a page test looks at.
struct Page {
    status: u16,
    cookies: Vec<String>,
    location: String,
    next_cursor: Option<String>,
    body: String,
}

/// A cookie jar over ureq, redirects not followed (a test looks at each answer).
struct Visitor {
    agent: ureq::Agent,
    base: String,
    jar: BTreeMap<String, String>,
}

impl Visitor {
    fn new(s: &Server) -> Visitor {
        Visitor {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .redirects(0)
                .build(),
            base: s.base.clone(),
            jar: BTreeMap::new(),
        }
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, String)],
    ) -> Page {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if !self.jar.is_empty() {
            let c: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.set("cookie", &c.join("; "));
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match form {
            Some(f) => req.send_form(f),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let cookies: Vec<String> = resp
            .all("set-cookie")
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        for c in &cookies {
            if let Some((k, rest)) = c.split_once('=') {
                let v = rest.split(';').next().unwrap_or("");
                if v.is_empty() {
                    self.jar.remove(k);
                } else {
                    self.jar.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Page {
            status: resp.status(),
            location: resp.header("location").unwrap_or("").to_owned(),
            next_cursor: resp.header("x-next-cursor").map(str::to_owned),
            cookies,
            body: resp.into_string().unwrap_or_default(),
        }
    }

    fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None, &[])
    }

    /// Fetches the login form (its CSRF cookie and field) and posts name and password.
    fn login(&mut self, user: &str, password: &str, headers: &[(&str, String)]) -> Page {
        let form = self.send("GET", "/ui/login", None, headers);
        assert_eq!(form.status, 200);
        let csrf = csrf_of(&form.body);
        self.send(
            "POST",
            "/ui/login",
            Some(&[
                ("csrf", &csrf),
                ("user", user),
                ("password", password),
                ("next", "/ui/"),
            ]),
            headers,
        )
    }
}

/// The `csrf` field's value in a page's form.
fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[at..at + 64].to_owned()
}

fn login_rate_limit(b: Backend) {
    let s = Server::start(b);
    add_user(&s, "ada", "viewer", "ada-password-1");
    add_user(&s, "bob", "viewer", "bob-password-1");
    let mut v = Visitor::new(&s);
    for i in 1..=5 {
        let p = v.login("ada", "wrong-password", &[]);
        assert_eq!(p.status, 401, "bad password {i}");
        assert!(p.body.contains("Wrong user name or password"), "{}", p.body);
    }
    // The sixth try, even with the right password, is refused and says why; no session.
    let p = v.login("ADA", "ada-password-1", &[]);
    assert_eq!(p.status, 429, "{}", p.body);
    assert!(
        p.body.contains("Too many failed logins: wait 15 minutes"),
        "{}",
        p.body
    );
    assert!(!p
        .cookies
        .iter()
        .any(|c| c.starts_with("auto_session=") && !c.starts_with("auto_session=;")));
    assert_eq!(v.get("/ui/hosts").status, 303, "no session was opened");
    // Another name from the same address is not held back by ada's failures.
    let mut other = Visitor::new(&s);
    assert_eq!(other.login("bob", "bob-password-1", &[]).status, 303);
    // Fifteen minutes later (the failures aged in the database) the right password works.
    s.sql("UPDATE login_failures SET at = at - 901");
    let p = v.login("ada", "ada-password-1", &[]);
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(v.get("/ui/hosts").status, 200);
}

fn a_form_without_its_csrf_token_is_refused_and_changes_nothing(b: Backend) {
    let s = Server::start(b);
    add_user(&s, "ada", "admin", "ada-password-1");
    assert_eq!(s.report(&Machine::new("db-1").report(None)).status, 201);
    let mut v = Visitor::new(&s);
    assert_eq!(v.login("ada", "ada-password-1", &[]).status, 303);
    let good = csrf_of(&v.get("/ui/hosts/db-1").body);
    let wrong = random_hex(32);
    for (what, form) in [
        ("missing", vec![("owner", "mallory")]),
        (
            "wrong",
            vec![("csrf", wrong.as_str()), ("owner", "mallory")],
        ),
        ("empty", vec![("csrf", ""), ("owner", "mallory")]),
    ] {
        let p = v.send("POST", "/ui/hosts/db-1/fields", Some(&form), &[]);
        assert_eq!(p.status, 403, "{what} token: {}", p.body);
        assert!(
            p.body
                .contains("This form is not from your current session"),
            "{}",
            p.body
        );
    }
    let f = s.get("/api/v1/hosts/db-1/fields").body;
    assert_eq!(f["owner"], Value::Null, "{f}");
    assert_eq!(f["changes"], json!([]), "{f}");
    // A key, a user, a host: none made by a form without its token.
    let p = v.send(
        "POST",
        "/ui/admin/users",
        Some(&[
            ("user", "eve"),
            ("role", "admin"),
            ("password", "eve-password-1"),
        ]),
        &[],
    );
    assert_eq!(p.status, 403);
    assert!(!String::from_utf8_lossy(&s.admin(&["users", "list"]).stdout).contains("eve"));
    // The same form with the session's token goes through (so the refusals above were the token's).
    let p = v.send(
        "POST",
        "/ui/hosts/db-1/fields",
        Some(&[("csrf", &good), ("owner", "alice")]),
        &[],
    );
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(s.get("/api/v1/hosts/db-1/fields").body["owner"], "alice");
    // The login form has its own token (a cookie and a field that must agree).
    let mut fresh = Visitor::new(&s);
    let p = fresh.send(
        "POST",
        "/ui/login",
        Some(&[
            ("csrf", &good),
            ("user", "ada"),
            ("password", "ada-password-1"),
        ]),
        &[],
    );
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("The login form expired"));
    assert!(!fresh.jar.contains_key("auto_session"));
}

/// The session cookie's attributes, by name.
fn session_cookie(p: &Page) -> String {
    p.cookies
        .iter()
        .find(|c| c.starts_with("auto_session="))
        .unwrap_or_else(|| panic!("no session cookie in {:?}", p.cookies))
        .clone()
}

fn the_session_cookie_is_httponly_strict_and_secure_behind_tls(b: Backend) {
    let s = Server::start(b.clone());
    add_user(&s, "ada", "viewer", "ada-password-1");
    let attrs = |c: &str| -> BTreeSet<String> {
        c.split(';')
            .skip(1)
            .map(|a| a.trim().to_ascii_lowercase())
            .collect()
    };
    let plain = session_cookie(&Visitor::new(&s).login("ada", "ada-password-1", &[]));
    let a = attrs(&plain);
    assert!(
        a.contains("httponly") && a.contains("samesite=strict") && a.contains("path=/"),
        "{plain}"
    );
    assert!(
        a.iter()
            .any(|x| x.starts_with("max-age=") && x != "max-age=0"),
        "it expires: {plain}"
    );
    assert!(!a.contains("secure"), "plain http: {plain}");
    let proxied = session_cookie(&Visitor::new(&s).login(
        "ada",
        "ada-password-1",
        &[("x-forwarded-proto", "https".into())],
    ));
    let a = attrs(&proxied);
    assert!(
        a.contains("secure") && a.contains("httponly") && a.contains("samesite=strict"),
        "{proxied}"
    );
    drop(s);
    let s = Server::start_with(b, &["--secure-cookies"]);
    add_user(&s, "ada", "viewer", "ada-password-1");
    let flagged = session_cookie(&Visitor::new(&s).login("ada", "ada-password-1", &[]));
    let a = attrs(&flagged);
    assert!(
        a.contains("secure") && a.contains("httponly") && a.contains("samesite=strict"),
        "{flagged}"
    );
}

fn agent_keys_are_refused_on_the_pages(b: Backend) {
    let s = Server::start(b);
    assert_eq!(s.report(&Machine::new("db-1").report(None)).status, 201);
    let out = s.admin(&[
        "keys",
        "create",
        "agent-db-1",
        "--scope",
        "host",
        "--host",
        "db-1",
    ]);
    assert!(out.status.success());
    let host_secret = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut v = Visitor::new(&s);
    // A signed request (the fleet key of the test server) is no session: off to the login page.
    for path in ["/ui/", "/ui/hosts", "/ui/hosts/db-1", "/ui/admin/keys"] {
        let headers = s.signed_headers("GET", path, b"", now(), &random_hex(16));
        let p = v.send("GET", path, None, &headers);
        assert_eq!(p.status, 303, "{path}: {}", p.body);
        assert!(
            p.location.starts_with("/ui/login"),
            "{path}: {}",
            p.location
        );
        assert!(!p.body.contains("db-1"));
    }
    // A key's secret offered as the session cookie opens nothing either.
    for secret in [&s.secret, &host_secret] {
        let mut v = Visitor::new(&s);
        v.jar.insert("auto_session".into(), secret.clone());
        let p = v.get("/ui/hosts");
        assert_eq!(p.status, 303, "{}", p.body);
        let p = v.send(
            "POST",
            "/ui/hosts/db-1/fields",
            Some(&[("owner", "mallory")]),
            &[],
        );
        assert_eq!(p.status, 401, "{}", p.body);
    }
    let headers = s.signed_headers(
        "POST",
        "/ui/hosts/db-1/fields",
        b"owner=mallory",
        now(),
        &random_hex(16),
    );
    let p = v.send(
        "POST",
        "/ui/hosts/db-1/fields",
        Some(&[("owner", "mallory")]),
        &headers,
    );
    assert_eq!(p.status, 401, "{}", p.body);
    assert_eq!(
        s.get("/api/v1/hosts/db-1/fields").body["owner"],
        Value::Null
    );
}

fn moved_parts_are_listed(b: Backend) {
    let s = Server::start(b);
    add_user(&s, "vic", "viewer", "vic-password-1");
    let unique = |m: &mut Machine, tag: &str| {
        for (i, p) in m.parts_mut("memory", "modules").iter_mut().enumerate() {
            p["serial"] = json!(format!("{tag}{i:02}{}", random_hex(3).to_uppercase()));
        }
    };
    let mut a = Machine::new("node-a");
    unique(&mut a, "A");
    let mut bm = Machine::new("node-b");
    unique(&mut bm, "B");
    assert_eq!(s.report(&a.report(None)).status, 201);
    assert_eq!(s.report(&bm.report(None)).status, 201);
    // One DIMM leaves node-a and is put into node-b (another slot).
    let dimm = a.parts_mut("memory", "modules").remove(0);
    let serial = dimm["serial"].as_str().expect("serial").to_owned();
    let mut moved = dimm.clone();
    moved["id"] = json!("Z9");
    moved["slot"] = json!("Z9");
    bm.parts_mut("memory", "modules").push(moved);
    assert_eq!(s.report(&a.report(Some("node-a"))).status, 200);
    assert_eq!(s.report(&bm.report(Some("node-b"))).status, 200);
    let moves = s.get("/api/v1/changes/moved").body;
    let moves = moves.as_array().expect("an array");
    assert_eq!(moves.len(), 1, "only the one DIMM moved: {moves:?}");
    let m = &moves[0];
    assert_eq!(m["serial"], json!(serial));
    assert_eq!(m["component"], "memory.modules");
    assert_eq!(
        (m["from_host"].as_str(), m["to_host"].as_str()),
        (Some("node-a"), Some("node-b"))
    );
    assert_eq!(
        (m["from_item"].as_str(), m["to_item"].as_str()),
        (Some(dimm["id"].as_str().expect("id")), Some("Z9"))
    );
    let mut v = Visitor::new(&s);
    assert_eq!(v.login("vic", "vic-password-1", &[]).status, 303);
    let page = v.get("/ui/changes").body;
    let section = &page[page.find("Moved parts").expect("a moved parts section")..];
    let row = &section[section
        .find(&serial)
        .unwrap_or_else(|| panic!("{serial} not on the page"))..];
    let row = &row[..row.find("</tr>").expect("a row")];
    assert!(row.contains("node-a") && row.contains("node-b"), "{row}");
}

/// Every page of a signed GET, following `X-Next-Cursor` (inventory) or `before` (changes),
/// with `between` run after each page (new reports arriving while someone pages).
fn pages_of(
    s: &Server,
    first: &str,
    cursor_param: &str,
    size: usize,
    mut between: impl FnMut(usize),
) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    let mut path = first.to_owned();
    let mut v = Visitor::new(s);
    loop {
        let headers = s.signed_headers("GET", &path, b"", now(), &random_hex(16));
        let p = v.send("GET", &path, None, &headers);
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        let rows: Vec<Value> = serde_json::from_str(&p.body).expect("a json array");
        let next = match cursor_param {
            "cursor" => p.next_cursor.clone(),
            _ => rows
                .last()
                .filter(|_| rows.len() == size)
                .map(|r| r["id"].to_string()),
        };
        out.push(rows);
        between(out.len());
        match next {
            Some(n) => {
                let n: String = n
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                path = format!("{first}&{cursor_param}={n}")
            }
            None => return out,
        }
        assert!(out.len() < 100, "paging does not end");
    }
}

fn cursor_paging_shows_every_host_and_change_once_while_reports_arrive(b: Backend) {
    let s = Server::start(b);
    let mut machines: Vec<Machine> = (0..20)
        .map(|i| Machine::new(&format!("pg-{i:02}")))
        .collect();
    for m in &machines {
        assert_eq!(s.report(&m.report(None)).status, 201);
    }
    let before: BTreeSet<String> = machines.iter().map(|m| m.hostname.clone()).collect();
    // The inventory by name, 7 a page; after each page, hosts change and new ones arrive on both
    // sides of the cursor.
    let mut k = 0;
    let pages = pages_of(
        &s,
        "/api/v1/hosts?sort=hostname&limit=7",
        "cursor",
        7,
        |n| {
            for m in machines.iter_mut().skip(n * 3).take(3) {
                *m.fact_mut("memory", "total_bytes") = json!(1_000_000 + n as i64);
                assert_eq!(s.report(&m.report(Some(&m.hostname.clone()))).status, 200);
            }
            if k < 2 {
                for name in [format!("a-new-{k}"), format!("zz-new-{k}")] {
                    assert_eq!(s.report(&Machine::new(&name).report(None)).status, 201);
                }
            }
            k += 1;
        },
    );
    let seen: Vec<String> = pages
        .iter()
        .flatten()
        .map(|r| r["hostname"].as_str().expect("hostname").to_owned())
        .collect();
    assert!(pages.len() >= 3, "several pages: {}", pages.len());
    let once: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(once.len(), seen.len(), "a host on two pages: {seen:?}");
    for h in &before {
        assert!(seen.contains(h), "{h} missing from the pages: {seen:?}");
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages in name order");

    // The change feed, newest first, 100 a page by `before`: the changes there were when paging
    // began (read first, with nothing arriving), each once, while new ones are written.
    let mut existing: BTreeSet<i64> = BTreeSet::new();
    let mut before = i64::MAX;
    loop {
        let page = s
            .get(&format!("/api/v1/changes?limit=1000&before={before}"))
            .body;
        let ids: Vec<i64> = page
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| c["id"].as_i64().expect("id"))
            .collect();
        match ids.iter().min() {
            Some(min) => before = *min,
            None => break,
        }
        existing.extend(ids);
    }
    assert!(
        existing.len() > 300,
        "enough changes for pages: {}",
        existing.len()
    );
    let top = *existing.iter().max().expect("a change");
    let feed = pages_of(&s, "/api/v1/changes?limit=100", "before", 100, |n| {
        if n < 3 {
            let name = format!("feed-{n}");
            assert_eq!(s.report(&Machine::new(&name).report(None)).status, 201);
        }
    });
    let ids: Vec<i64> = feed
        .iter()
        .flatten()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a change on two pages");
    let old: BTreeSet<i64> = unique.iter().copied().filter(|i| *i <= top).collect();
    assert_eq!(old, existing, "every change that was there, once");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
}

both!(
    login_rate_limit,
    a_form_without_its_csrf_token_is_refused_and_changes_nothing,
    the_session_cookie_is_httponly_strict_and_secure_behind_tls,
    agent_keys_are_refused_on_the_pages,
    moved_parts_are_listed,
    cursor_paging_shows_every_host_and_change_once_while_reports_arrive,
);
