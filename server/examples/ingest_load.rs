//! Load generator for `auto-server`: signed six-collector reports from N distinct hosts over
//! many concurrent HTTP/1.1 keep-alive connections on loopback, in three rounds: new hosts
//! (201), the same hosts with changes (a disk resized, a NIC address moved, a new kernel: change
//! detection runs), and the same hosts unchanged. Prints reports/s and p50/p99 latency per round.
//!
//! ```text
//! cargo run --release -p auto-server --example ingest_load -- URL KEY SECRET [HOSTS] [CONCURRENCY]
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auto_proto::sign;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).expect("random source");
    hex::encode(b)
}

fn uuid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A realistic report (report schema 2): 2-socket server, 8 DIMMs, 4 disks, 4 NICs.
fn report(i: usize, round: usize) -> Value {
    let hostname = format!("node-{i:05}");
    let changed = round >= 2;
    let ok =
        |data: Value| json!({"status": "ok", "version": "0.2.0", "duration_ms": 4, "data": data});
    let disks: Vec<Value> = (0..4)
        .map(|d| {
            let grown = changed && d == 0;
            let serial = format!("S45N{i:05}D{d}");
            json!({"id": serial, "name": format!("sd{}", (b'a' + d as u8) as char),
                "size_bytes": if grown { 960_197_124_096u64 } else { 480_103_981_056u64 },
                "model": "SAMSUNG MZ7LH480HAHQ", "serial": serial,
                "rotational": false, "kind": "ssd"})
        })
        .collect();
    let nics: Vec<Value> = (0..4)
        .map(|n| {
            let octet = if changed && n == 0 { 200 } else { 10 };
            let mac = format!("3c:ec:ef:{:02x}:{:02x}:{n:02x}", i / 256, i % 256);
            json!({"id": mac, "name": format!("eno{}", n + 1), "mac": mac, "permanent_mac": mac,
                "up": n < 2, "mtu_bytes": 1500, "speed_mbps": 10000,
                "addresses": [{"address": format!("10.{}.{}.{}", n, i % 250, octet), "prefix_len": 24},
                              {"address": format!("fe80::3eec:efff:fe{:02x}:{:02x}{n:02x}", i / 256, i % 256), "prefix_len": 64}]})
        })
        .collect();
    let modules: Vec<Value> = (0..8)
        .map(|m| {
            let slot = format!("DIMM_{}{}", (b'A' + (m / 2) as u8) as char, m % 2 + 1);
            json!({"id": slot, "slot": slot,
                "size_bytes": 34_359_738_368u64, "type": "DDR4", "speed_mts": 2933,
                "manufacturer": "Samsung", "serial": format!("M{i:05}{m}")})
        })
        .collect();
    let serial = format!("ZM{i:08}");
    let system_uuid = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
    json!({
        "schema": 2,
        "report_id": uuid(),
        "hostname": hostname,
        "previous_hostname": if round == 1 { Value::Null } else { json!(hostname) },
        "collected_at": "2026-11-23T09:00:00Z",
        "agent": {"version": "0.2.0", "mode": "agent"},
        "plugins": {
            "os": ok(json!({
                "facts": {"os_name": "Debian GNU/Linux", "os_version": "12",
                    "kernel": if changed { "6.1.0-27-amd64" } else { "6.1.0-26-amd64" }, "arch": "x86_64"},
                "volatile": {"uptime_seconds": 86_400 * round + i},
                "identity": {"hostname": hostname, "machine_id": format!("{:032x}", i as u128 * 7919)}})),
            "cpu": ok(json!({"facts": {"model": "Intel(R) Xeon(R) Silver 4210R CPU @ 2.40GHz",
                "socket_count": 2, "core_count": 20, "thread_count": 40}})),
            "memory": ok(json!({"facts": {"total_bytes": 274_877_906_944u64},
                "lists": {"modules": {"key": ["slot"], "parts": modules}}})),
            "disk": ok(json!({"lists": {"disks": {"key": ["serial", "name"], "parts": disks}}})),
            "nic": ok(json!({"lists": {"interfaces": {"key": ["permanent_mac", "name"], "parts": nics}}})),
            "board": ok(json!({"facts": {"manufacturer": "Supermicro", "product": "X11DPi-N", "serial": serial, "uuid": system_uuid},
                "identity": {"serial": serial, "system_uuid": system_uuid}})),
        }
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct Stats {
    latencies: Vec<Duration>,
    errors: usize,
    statuses: std::collections::BTreeMap<u16, usize>,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: ingest_load URL KEY SECRET [HOSTS=1000] [CONCURRENCY=32]");
        std::process::exit(2);
    }
    let base = args[1].trim_end_matches('/').to_owned();
    let key = args[2].clone();
    let secret = args[3].clone();
    let hosts: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let concurrency: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(32);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let url: hyper::Uri = format!("{base}/api/v1/reports")
        .parse()
        .expect("a valid url");
    let path = "/api/v1/reports";

    println!("{hosts} hosts, {concurrency} concurrent connections, {base}");
    for (round, name, expect) in [
        (1, "new hosts", 201u16),
        (2, "with changes", 200),
        (3, "unchanged", 200),
    ] {
        let bodies: Arc<Vec<Bytes>> = Arc::new(
            (0..hosts)
                .map(|i| Bytes::from(report(i, round).to_string()))
                .collect(),
        );
        let avg = bodies.iter().map(|b| b.len()).sum::<usize>() / hosts.max(1);
        let next = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(Mutex::new(Stats {
            latencies: Vec::with_capacity(hosts),
            errors: 0,
            statuses: Default::default(),
        }));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, key, secret) =
                (client.clone(), url.clone(), key.clone(), secret.clone());
            let (bodies, next, stats) = (bodies.clone(), next.clone(), stats.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        break;
                    }
                    let body = bodies[i].clone();
                    let (ts, nonce) = (now(), random_hex(16));
                    let sig = sign::signature(secret.as_bytes(), "POST", path, ts, &nonce, &body);
                    let req = hyper::Request::post(url.clone())
                        .header("content-type", "application/json")
                        .header(sign::HEADER_KEY, key.as_str())
                        .header(sign::HEADER_TIMESTAMP, ts.to_string())
                        .header(sign::HEADER_NONCE, nonce)
                        .header(sign::HEADER_SIGNATURE, sig)
                        .body(Full::new(body))
                        .expect("a valid request");
                    let t = Instant::now();
                    let result = client.request(req).await;
                    let status = match result {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let _ = resp.into_body().collect().await;
                            Some(status)
                        }
                        Err(e) => {
                            eprintln!("request failed: {e}");
                            None
                        }
                    };
                    let elapsed = t.elapsed();
                    let mut s = stats.lock().expect("stats lock");
                    s.latencies.push(elapsed);
                    match status {
                        Some(code) => {
                            *s.statuses.entry(code).or_default() += 1;
                            if code != expect {
                                s.errors += 1;
                            }
                        }
                        None => s.errors += 1,
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let wall = started.elapsed();
        let mut s = stats.lock().expect("stats lock");
        s.latencies.sort();
        let pct = |p: f64| {
            let idx = ((s.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
            s.latencies
                .get(idx)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "round {round} ({name}): {} reports of ~{avg} bytes in {:.2} s = {:.0} reports/s; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; statuses {:?}; unexpected {}",
            s.latencies.len(),
            wall.as_secs_f64(),
            s.latencies.len() as f64 / wall.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0),
            s.statuses,
            s.errors
        );
        if s.errors > 0 {
            std::process::exit(1);
        }
    }
}
