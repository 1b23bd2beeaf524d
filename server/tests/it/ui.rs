//! The web pages in a real browser: Debian's chromium, headless, driven over WebDriver by
//! chromedriver (started here on a free port) through fantoccini. On SQLite, and on PostgreSQL
//! with the other PostgreSQL cases. Saves a screenshot of every page under target/screenshots/
//! (target/screenshots/postgres/ for the PostgreSQL run).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::support::{now, random_hex, Backend, Machine, Server, BIN};

/// `auto-server users add NAME --role ROLE`, the password on standard input.
pub fn add_user(s: &Server, name: &str, role: &str, password: &str) {
    let mut child = Command::new(BIN)
        .args(["--db", &s.db_url, "--master-key"])
        .arg(s.dir.join("master.key"))
        .args(["users", "add", name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run auto-server users add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("users add");
    assert!(
        out.status.success(),
        "users add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let exe = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("chromedriver is not installed: apt-get install chromium chromium-driver (scripts/test.sh does)")
        });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while ureq::get(&format!("{url}/status")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromedriver did not answer in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver { child, url }
}

/// `target/screenshots/` (SQLite) or `target/screenshots/postgres/`.
fn screenshots(b: &Backend) -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("screenshots");
    if matches!(b, Backend::Postgres(_)) {
        dir = dir.join("postgres");
    }
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shot(c: &Client, dir: &std::path::Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("save screenshot");
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// The text of `css` once it contains `needle` (a form's POST, redirect and GET may still be on
/// their way when `submit` returns), or its text after 10 s.
async fn text_once_it_has(c: &Client, css: &str, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let text = match c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) || started.elapsed() > Duration::from_secs(10) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn first_column(c: &Client, table: &str) -> Vec<String> {
    let mut out = Vec::new();
    for cell in c
        .find_all(Locator::Css(&format!("{table} tbody tr td:first-child")))
        .await
        .expect("cells")
    {
        out.push(cell.text().await.expect("text"));
    }
    out
}

async fn path(c: &Client) -> String {
    let u = c.current_url().await.expect("url");
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

/// The page's path once it starts with `prefix` (a form's request and the page it loads may still
/// be on their way when `submit` returns), or the path after 10 s.
async fn path_once_it_starts_with(c: &Client, prefix: &str) -> String {
    let started = Instant::now();
    loop {
        let now = path(c).await;
        if now.starts_with(prefix) || started.elapsed() > Duration::from_secs(10) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/ui/")).await.expect("goto");
    assert!(path(c).await.starts_with("/ui/login"), "{}", path(c).await);
    let form = c
        .form(Locator::Css("form.login"))
        .await
        .expect("login form");
    form.set_by_name("user", user).await.expect("user");
    form.set_by_name("password", password)
        .await
        .expect("password");
    form.submit().await.expect("submit");
    // The POST, its redirect and the GET may still be on their way when `submit` returns.
    let started = Instant::now();
    while path(c).await != "/ui/" && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(path(c).await, "/ui/", "logged in as {user}");
}

/// A signed GET's status, headers and body text, with extra headers.
fn api_text(s: &Server, path: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let headers = s.signed_headers("GET", path, b"", now(), &random_hex(16));
    let mut req = ureq::get(&format!("{}{path}", s.base));
    for (k, v) in &headers {
        req = req.set(k, v);
    }
    for (k, v) in extra {
        req = req.set(k, v);
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// Moves the first report two days into the past (the server stamps what it receives with its
/// own clock): its change rows, its report row and the host's creation.
fn backdate(s: &Server, report_id: &str, secs: i64) {
    for sql in [
        format!("UPDATE changes SET at = at - {secs} WHERE report_id = '{report_id}'"),
        format!(
            "UPDATE reports SET received_at = received_at - {secs} WHERE report_id = '{report_id}'"
        ),
        format!("UPDATE hosts SET created_at = created_at - {secs}"),
    ] {
        s.sql(&sql);
    }
}

fn no_redirects() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

fn a_person_uses_the_pages_in_a_browser(b: Backend) {
    let shots = screenshots(&b);
    let s = Server::start(b);
    add_user(&s, "ada", "admin", "ada-password-1");
    add_user(&s, "vic", "viewer", "vic-password-1");

    // Two reports of one machine: the second without its first DIMM.
    let mut m = Machine::new("ui-web-01");
    let mac_of = |m: &mut Machine, mac: &str| {
        for p in m.parts_mut("nic", "interfaces") {
            p["mac"] = json!(mac);
        }
    };
    let mac = format!(
        "02:{}",
        random_hex(5)
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    );
    mac_of(&mut m, &mac);
    let first = m.report(None);
    let first_id = first["report_id"].as_str().expect("id").to_owned();
    assert_eq!(s.report(&first).status, 201);
    backdate(&s, &first_id, 2 * 86_400);
    let dimms = m.parts("memory", "modules").len();
    assert!(dimms >= 2, "the recorded machine has DIMMs");
    let removed = m.parts_mut("memory", "modules").remove(0);
    let removed_id = removed["id"].as_str().expect("part id").to_owned();
    let second = m.report(Some("ui-web-01"));
    let second_id = second["report_id"].as_str().expect("id").to_owned();
    assert_eq!(s.report(&second).status, 200);
    // another host, so that a search has something to leave out
    let mut other = Machine::new("ui-db-02");
    mac_of(&mut other, "02:00:00:00:00:01");
    assert_eq!(s.report(&other.report(None)).status, 201);

    // The two doors stay apart: a signed request cannot open a page, a page needs a session.
    let r = no_redirects()
        .get(&format!("{}/ui/hosts", s.base))
        .set(
            auto_proto::sign::HEADER_KEY,
            &s.signed_headers("GET", "/ui/hosts", b"", now(), &random_hex(16))[0].1,
        )
        .call()
        .expect("answer");
    assert_eq!(r.status(), 303, "a key is not a session");
    assert!(r.header("location").unwrap_or("").starts_with("/ui/login"));

    let driver = chromedriver();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--window-size=1280,900", "--lang=en-US"]}),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a chromium session");
        let base = s.base.clone();

        // Log in (the login page first).
        c.goto(&format!("{base}/ui/hosts")).await.expect("goto");
        assert!(path(&c).await.starts_with("/ui/login?next="));
        shot(&c, &shots, "login").await;
        login(&c, &base, "ada", "ada-password-1").await;
        assert!(text_of(&c, "h1").await.contains("Dashboard"));
        shot(&c, &shots, "dashboard").await;

        // Keyboard only: Tab from the top reaches the search box; type a MAC and press Enter.
        let mut reached = false;
        for _ in 0..6 {
            c.active_element()
                .await
                .expect("active")
                .send_keys("\u{E004}")
                .await
                .expect("tab");
            let id = c.active_element().await.expect("active").attr("id").await.expect("id");
            if id.as_deref() == Some("top-q") {
                reached = true;
                break;
            }
        }
        assert!(reached, "Tab reaches the search box within 6 presses");
        let search = c.active_element().await.expect("active");
        search.send_keys(&mac.to_uppercase()).await.expect("type");
        search.send_keys("\u{E007}").await.expect("enter");

        // The search by MAC finds its host, and only it.
        let p = path_once_it_starts_with(&c, "/ui/hosts?q=").await;
        assert!(p.starts_with("/ui/hosts?q="), "{p}");
        let hosts = text_of(&c, "table#hosts tbody").await;
        assert!(hosts.contains("ui-web-01"), "{hosts}");
        assert!(!hosts.contains("ui-db-02"), "{hosts}");
        shot(&c, &shots, "inventory-search-mac").await;

        // The CSV export of that set is the API's CSV answer, byte for byte.
        let q = format!("q={}", mac.replace(':', "%3A"));
        let csv = c
            .execute_async(
                "const [url, done] = arguments; fetch(url).then(r => r.text()).then(done);",
                vec![json!(format!("/ui/hosts/export?format=csv&{q}"))],
            )
            .await
            .expect("fetch the export");
        let (status, api_csv) = api_text(&s, &format!("/api/v1/hosts?{q}"), &[("accept", "text/csv")]);
        assert_eq!(status, 200);
        assert_eq!(csv.as_str().unwrap_or(""), api_csv);
        assert!(api_csv.lines().count() == 2 && api_csv.contains("ui-web-01"), "{api_csv}");
        // and the whole inventory too
        let all = c
            .execute_async(
                "const [url, done] = arguments; fetch(url).then(r => r.text()).then(done);",
                vec![json!("/ui/hosts/export?format=csv")],
            )
            .await
            .expect("fetch the export");
        let (_, api_all) = api_text(&s, "/api/v1/hosts", &[("accept", "text/csv")]);
        assert_eq!(all.as_str().unwrap_or(""), api_all);
        assert_eq!(api_all.lines().count(), 3, "{api_all}");

        // The inventory without a search: both hosts.
        c.goto(&format!("{base}/ui/hosts")).await.expect("goto");
        assert_eq!(c.find_all(Locator::Css("table#hosts tbody tr")).await.expect("rows").len(), 2);
        shot(&c, &shots, "inventory").await;

        // The host page lists its DIMMs (one less now) and the timeline shows the removal.
        c.find(Locator::LinkText("ui-web-01")).await.expect("host link").click().await.expect("click");
        assert_eq!(path(&c).await, "/ui/hosts/ui-web-01");
        let rows = c
            .find_all(Locator::Css("table#list-memory-modules tbody tr"))
            .await
            .expect("DIMM rows");
        assert_eq!(rows.len(), dimms - 1, "the DIMMs of the last report");
        let ids = first_column(&c, "table#list-memory-modules").await;
        assert!(!ids.contains(&removed_id), "{ids:?}");
        let timeline = text_of(&c, "#timeline").await;
        assert!(
            timeline.lines().any(|l| l.contains(&removed_id) && l.contains("removed")),
            "{timeline}"
        );
        shot(&c, &shots, "host").await;

        // As of yesterday, the DIMM is back.
        let yesterday = &rfc3339(now() - 86_400)[..10];
        let form = c.form(Locator::Css("form.asof")).await.expect("as-of form");
        form.set_by_name("at", yesterday).await.expect("date");
        // a date input takes keyboard input in the locale's order: set the value directly
        c.execute(
            "document.getElementById('at').value = arguments[0];",
            vec![json!(yesterday)],
        )
        .await
        .expect("set the date");
        form.submit().await.expect("submit");
        let at = format!("/ui/hosts/ui-web-01?at={yesterday}");
        assert_eq!(path_once_it_starts_with(&c, &at).await, at);
        assert!(text_of(&c, "#as-of-notice").await.contains("As of"));
        let ids = first_column(&c, "table#list-memory-modules").await;
        assert!(ids.contains(&removed_id), "{ids:?}");
        assert_eq!(ids.len(), dimms);
        shot(&c, &shots, "host-as-of-yesterday").await;

        // The diff of the two reports names the DIMM.
        c.goto(&format!("{base}/ui/hosts/ui-web-01")).await.expect("goto");
        c.form(Locator::Css("form.diffform"))
            .await
            .expect("diff form")
            .submit()
            .await
            .expect("compare");
        let diff_path = path_once_it_starts_with(&c, "/ui/hosts/ui-web-01/diff?").await;
        assert!(diff_path.starts_with("/ui/hosts/ui-web-01/diff?"), "{diff_path}");
        let diff = text_of(&c, "#diff-result").await;
        assert!(
            diff.lines().any(|l| l.contains(&removed_id) && l.contains("removed")),
            "{diff}"
        );
        shot(&c, &shots, "diff").await;
        let (status, api_diff) = api_text(
            &s,
            &format!("/api/v1/hosts/ui-web-01/diff?from={first_id}&to={second_id}"),
            &[],
        );
        assert_eq!(status, 200);
        let api_diff: Value = serde_json::from_str(&api_diff).expect("json");
        assert!(api_diff["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|ch| ch["item"] == removed_id.as_str() && ch["action"] == "removed"));

        // Hand-entered fields: an admin sets them, the log says who.
        c.goto(&format!("{base}/ui/hosts/ui-web-01")).await.expect("goto");
        let form = c.form(Locator::Css("form.fields")).await.expect("fields form");
        form.set_by_name("owner", "team-storage").await.expect("owner");
        form.set_by_name("tags", "prod, rack-a").await.expect("tags");
        form.submit().await.expect("save");
        let fields = text_once_it_has(&c, "#fields", "team-storage").await;
        assert!(fields.contains("ada") && fields.contains("team-storage"), "{fields}");
        c.goto(&format!("{base}/ui/hosts?tag=prod")).await.expect("goto");
        assert!(text_of(&c, "table#hosts").await.contains("ui-web-01"));

        // The other pages, each once.
        for (p, name) in [
            ("/ui/changes", "changes"),
            ("/ui/errors", "errors"),
            ("/ui/admin/keys", "admin-keys"),
            ("/ui/admin/hosts", "admin-hosts"),
            ("/ui/admin/users", "admin-users"),
            ("/ui/", "dashboard-after"),
        ] {
            c.goto(&format!("{base}{p}")).await.expect("goto");
            assert_eq!(path(&c).await, p);
            shot(&c, &shots, name).await;
        }
        c.goto(&format!("{base}/ui/changes?host=ui-web-01&action=removed")).await.expect("goto");
        let feed = text_of(&c, "main table").await;
        assert!(feed.contains(&removed_id) && !feed.contains("ui-db-02"), "{feed}");

        // A phone-sized window renders without a page-wide horizontal scroll.
        c.set_window_size(390, 844).await.expect("resize");
        for (p, name) in [("/ui/hosts/ui-web-01", "host-phone"), ("/ui/hosts", "inventory-phone"), ("/ui/", "dashboard-phone")] {
            c.goto(&format!("{base}{p}")).await.expect("goto");
            let fits = c
                .execute("return document.documentElement.scrollWidth <= document.documentElement.clientWidth;", vec![])
                .await
                .expect("measure");
            shot(&c, &shots, name).await;
            assert_eq!(fits, json!(true), "{p} fits a 390 px window");
        }
        c.set_window_size(1280, 900).await.expect("resize");

        // Logout ends the session: the old cookie opens nothing any more.
        c.goto(&format!("{base}/ui/")).await.expect("goto");
        let cookie = c.get_named_cookie("auto_session").await.expect("session cookie");
        let old = cookie.value().to_owned();
        c.find(Locator::Css("form.logout button")).await.expect("logout").click().await.expect("click");
        let p = path_once_it_starts_with(&c, "/ui/login").await;
        assert!(p.starts_with("/ui/login"), "{p}");
        c.goto(&format!("{base}/ui/hosts")).await.expect("goto");
        assert!(path(&c).await.starts_with("/ui/login"));
        let r = no_redirects()
            .get(&format!("{base}/ui/hosts"))
            .set("cookie", &format!("auto_session={old}"))
            .call()
            .expect("answer");
        assert_eq!(r.status(), 303, "the old session is gone from the server");

        // A viewer reads, and is refused the admin pages.
        login(&c, &base, "vic", "vic-password-1").await;
        for p in ["/ui/admin/keys", "/ui/admin/hosts", "/ui/admin/users"] {
            c.goto(&format!("{base}{p}")).await.expect("goto");
            assert!(text_of(&c, "h1").await.contains("Admins only"), "{p}");
        }
        shot(&c, &shots, "viewer-refused").await;
        c.goto(&format!("{base}/ui/hosts/ui-web-01")).await.expect("goto");
        assert!(c.find(Locator::Css("form.fields")).await.is_err(), "a viewer gets no edit form");
        // and a session cannot call the signed API
        let cookie = c.get_named_cookie("auto_session").await.expect("session cookie");
        let r = ureq::get(&format!("{base}/api/v1/hosts"))
            .set("cookie", &format!("auto_session={}", cookie.value()))
            .call();
        assert!(matches!(r, Err(ureq::Error::Status(401, _))), "a session is not a key");
        c.close().await.expect("close");
    });
}

fn rfc3339(t: i64) -> String {
    // days to civil date (the server's own algorithm, H. Hinnant's)
    let z = t.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T00:00:00Z")
}

crate::both!(a_person_uses_the_pages_in_a_browser);
