//! The dashboard's figures (`GET /api/v1/summary`, the same JSON the page draws) against a
//! count of what the test itself sent, after inserts, updates and a host's removal; and, on
//! SQLite, the query plans of its queries (each an index, none a pass over the components).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::both;
use crate::support::{Backend, Machine, Server};

/// The test's own model of the fleet: each machine and the collectors failing in its last report.
struct Fleet {
    machines: BTreeMap<String, (Machine, Vec<&'static str>)>,
}

impl Fleet {
    fn report(&mut self, s: &Server, m: Machine, failing: Vec<&'static str>) {
        let mut r = m.report(Some(&m.hostname));
        for p in &failing {
            r["plugins"][*p] = json!({"status": "error", "duration_ms": 10,
                "error": {"kind": "failed", "message": "exit status 1"}});
        }
        let a = s.report(&r);
        assert!(a.status == 200 || a.status == 201, "{:?}", a.body);
        self.machines.insert(m.hostname.clone(), (m, failing));
    }

    /// What the dashboard must say: the chart counts, failing collectors and shared serials.
    fn expected(&self) -> Value {
        let mut charts = BTreeMap::new();
        for (chart, plugin, fact) in [
            ("os", "os", "os_name"),
            ("vendor", "board", "manufacturer"),
            ("model", "board", "product"),
            ("memory_bytes", "memory", "total_bytes"),
        ] {
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            for (m, _) in self.machines.values() {
                // A collector that failed left its data as it was: the model keeps it too.
                *counts.entry(m.fact(plugin, fact).to_string()).or_default() += 1;
            }
            charts.insert(chart, counts);
        }
        let mut failing: BTreeMap<String, i64> = BTreeMap::new();
        for (_, f) in self.machines.values() {
            for p in f {
                *failing.entry((*p).to_owned()).or_default() += 1;
            }
        }
        let mut serials: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (m, _) in self.machines.values() {
            serials
                .entry(m.serial.clone())
                .or_default()
                .push(m.hostname.clone());
        }
        serials.retain(|v, h| h.len() > 1 && !v.starts_with("To Be"));
        json!({"hosts": self.machines.len(), "charts": charts, "failing": failing, "serials": serials})
    }
}

/// The same figures, as the server gives them.
fn actual(s: &Server) -> Value {
    let a = s.get("/api/v1/summary");
    assert_eq!(a.status, 200, "{:?}", a.body);
    let d = a.body;
    let mut charts = BTreeMap::new();
    for chart in ["os", "vendor", "model", "memory_bytes"] {
        let counts: BTreeMap<String, i64> = d["charts"][chart]
            .as_array()
            .expect("a chart")
            .iter()
            .map(|b| {
                (
                    b["value"].to_string(),
                    b["hosts"].as_i64().expect("a count"),
                )
            })
            .collect();
        charts.insert(chart, counts);
    }
    let failing: BTreeMap<String, i64> = d["failing_collectors"]
        .as_array()
        .expect("failing collectors")
        .iter()
        .map(|f| {
            (
                f["collector"].as_str().expect("a name").to_owned(),
                f["hosts"].as_i64().expect("a count"),
            )
        })
        .collect();
    let serials: BTreeMap<String, Vec<String>> = d["shared_identities"]
        .as_array()
        .expect("shared identities")
        .iter()
        .filter(|g| g["identity"] == "serial")
        .map(|g| {
            (
                g["value"].as_str().expect("a value").to_owned(),
                g["hosts"]
                    .as_array()
                    .expect("hosts")
                    .iter()
                    .map(|h| h.as_str().expect("a name").to_owned())
                    .collect(),
            )
        })
        .collect();
    json!({"hosts": d["hosts"], "charts": charts, "failing": failing, "serials": serials})
}

fn machine(name: &str, os: &str, vendor: &str, memory: i64) -> Machine {
    let mut m = Machine::new(name);
    *m.fact_mut("os", "os_name") = json!(os);
    *m.fact_mut("board", "manufacturer") = json!(vendor);
    *m.fact_mut("memory", "total_bytes") = json!(memory);
    m
}

fn the_dashboard_counts_what_was_reported_after_inserts_updates_and_removal(b: Backend) {
    let s = Server::start(b);
    let mut fleet = Fleet {
        machines: BTreeMap::new(),
    };
    let gib = 1i64 << 30;
    fleet.report(
        &s,
        machine("a-1", "Debian GNU/Linux", "Dell Inc.", 16 * gib),
        vec![],
    );
    fleet.report(
        &s,
        machine("a-2", "Debian GNU/Linux", "HPE", 32 * gib),
        vec!["disk"],
    );
    fleet.report(
        &s,
        machine("a-3", "Rocky Linux", "HPE", 32 * gib),
        vec!["disk", "nic"],
    );
    let mut twin = machine("a-4", "Ubuntu", "Lenovo", 64 * gib);
    twin.serial = fleet.machines["a-1"].0.serial.clone();
    fleet.report(&s, twin, vec![]);
    // A placeholder serial that several machines share is no duplicate.
    for name in ["p-1", "p-2"] {
        let mut m = machine(name, "Ubuntu", "Supermicro", 8 * gib);
        m.serial = "To Be Filled By O.E.M.".into();
        fleet.report(&s, m, vec![]);
    }
    assert_eq!(actual(&s), fleet.expected(), "after the first reports");
    assert_eq!(
        fleet.expected()["failing"],
        json!({"disk": 2, "nic": 1}),
        "the test's model itself"
    );

    // Updates: another OS and memory size, a collector that recovers, one that starts failing,
    // the shared serial replaced.
    let (mut m, _) = fleet.machines["a-3"].clone();
    *m.fact_mut("os", "os_name") = json!("Debian GNU/Linux");
    *m.fact_mut("memory", "total_bytes") = json!(128 * gib);
    fleet.report(&s, m, vec!["nic"]);
    let (m, _) = fleet.machines["a-2"].clone();
    fleet.report(&s, m, vec![]);
    let (m, _) = fleet.machines["p-1"].clone();
    fleet.report(&s, m, vec!["cpu"]);
    let (mut m, _) = fleet.machines["a-4"].clone();
    m.serial = "SN-OWN-A4".into();
    fleet.report(&s, m, vec![]);
    assert_eq!(actual(&s), fleet.expected(), "after updates");

    // A host removed takes its facts and failures with it.
    let out = s.admin(&["hosts", "remove", "A-3"]);
    assert!(
        out.status.success(),
        "hosts remove: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fleet.machines.remove("a-3");
    let out = s.admin(&["hosts", "remove", "a-3"]);
    assert_eq!(out.status.code(), Some(1), "a second removal finds no host");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no host named"));
    assert_eq!(actual(&s), fleet.expected(), "after a removal");
    assert_eq!(s.get("/api/v1/hosts/a-3").status, 404);
}

both!(the_dashboard_counts_what_was_reported_after_inserts_updates_and_removal);

/// The plans SQLite (the copy inside auto-server, through sqlx) makes for the dashboard's
/// queries: every one reads an index, none scans the components or the hosts' rows.
#[test]
fn the_dashboard_queries_read_indexes_only() {
    use sqlx::{Connection, Row};
    let s = Server::start(Backend::Sqlite);
    fleet_of_two(&s);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&s.db_url)
            .await
            .expect("open the test database");
        // Statistics as a full database would have them, so the planner chooses as it would there.
        sqlx::query("ANALYZE").execute(&mut conn).await.expect("analyze");
        let chart = auto_server::store::CHART_SQL
            .replace("$1", "'os'")
            .replace("$2", "'os_name'");
        for (sql, must) in [
            (chart.as_str(), "USING COVERING INDEX components_fact_values"),
            (
                "SELECT plugin, COUNT(*) AS n FROM host_failures GROUP BY plugin ORDER BY n DESC, plugin",
                "USING COVERING INDEX",
            ),
            (
                "SELECT COUNT(*) AS n FROM hosts WHERE last_report_at >= 0",
                "USING COVERING INDEX hosts_last_report_at",
            ),
            (
                "SELECT serial AS v FROM hosts WHERE serial IS NOT NULL GROUP BY serial HAVING COUNT(*) > 1 ORDER BY serial",
                "USING COVERING INDEX hosts_serial",
            ),
        ] {
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&mut conn)
                .await
                .expect("explain")
                .iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect();
            let text = plan.join(" | ");
            eprintln!("{sql}\n    {text}");
            assert!(text.contains(must), "{sql}: plan {text:?} lacks {must:?}");
            assert!(
                !plan.iter().any(|p| p.starts_with("SCAN components")),
                "{sql}: {text}"
            );
        }
    });
}

fn fleet_of_two(s: &Server) {
    for name in ["q-1", "q-2"] {
        let a = s.report(&Machine::new(name).report(None));
        assert_eq!(a.status, 201, "{:?}", a.body);
    }
}
