//! A simulated year for `scripts/bench-retention.sh`: HOSTS hosts send one signed report a day
//! for DAYS days to an `auto-server` that runs on the test clock (AUTO_SERVER_TEST_CLOCK_FILE),
//! which this program sets to each simulated day before that day's reports. Each host has PARTS
//! parts (8 DIMMs, 4 disks, 4 NICs and the rest installed packages); every day PARTS/100 of them
//! (1 %) change one attribute, so the change log grows as a real fleet's would. Facts do not
//! change; the uptime (volatile) does.
//!
//! ```text
//! cargo run -p auto-server --example retention_sim -- URL KEY SECRET CLOCK_FILE START \
//!     [HOSTS=100] [DAYS=365] [PARTS=200] [CONCURRENCY=4]
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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

/// Host `i`'s report on day `day`; `revs[p]` is how often part `p` changed so far.
fn report(i: usize, day: usize, revs: &[u32]) -> Value {
    let hostname = format!("node-{i:05}");
    let ok =
        |data: Value| json!({"status": "ok", "version": "0.2.0", "duration_ms": 4, "data": data});
    let rev = |p: usize| format!("r{}", revs[p]);
    let modules: Vec<Value> = (0..8)
        .map(|m| {
            let slot = format!("DIMM_{}{}", (b'A' + (m / 2) as u8) as char, m % 2 + 1);
            json!({"id": slot, "slot": slot, "size_bytes": 34_359_738_368u64, "type": "DDR4",
                "speed_mts": 2933, "manufacturer": "Samsung", "serial": format!("M{i:05}{m}"),
                "firmware": rev(m)})
        })
        .collect();
    let disks: Vec<Value> = (0..4)
        .map(|d| {
            let serial = format!("S45N{i:05}D{d}");
            json!({"id": serial, "name": format!("sd{}", (b'a' + d as u8) as char),
                "size_bytes": 480_103_981_056u64, "model": "SAMSUNG MZ7LH480HAHQ",
                "serial": serial, "rotational": false, "kind": "ssd", "firmware": rev(8 + d)})
        })
        .collect();
    let nics: Vec<Value> = (0..4)
        .map(|n| {
            let mac = format!("3c:ec:ef:{:02x}:{:02x}:{n:02x}", i / 256, i % 256);
            json!({"id": mac, "name": format!("eno{}", n + 1), "mac": mac, "permanent_mac": mac,
                "up": n < 2, "mtu_bytes": 1500, "speed_mbps": 10000, "firmware": rev(12 + n),
                "addresses": [{"address": format!("10.{}.{}.10", n, i % 250), "prefix_len": 24}]})
        })
        .collect();
    let packages: Vec<Value> = (16..revs.len())
        .map(|p| {
            let name = format!("package-{p:04}");
            json!({"id": name, "name": name, "version": format!("1.{p}.{}", revs[p]), "arch": "amd64"})
        })
        .collect();
    let serial = format!("ZM{i:08}");
    let system_uuid = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
    json!({
        "schema": 2,
        "report_id": uuid(),
        "hostname": hostname,
        "previous_hostname": if day == 0 { Value::Null } else { json!(hostname) },
        "collected_at": "2026-11-23T09:00:00Z",
        "agent": {"version": "0.2.0", "mode": "agent"},
        "plugins": {
            "os": ok(json!({
                "facts": {"os_name": "Debian GNU/Linux", "os_version": "12",
                    "kernel": "6.1.0-26-amd64", "arch": "x86_64"},
                "volatile": {"uptime_seconds": 86_400 * day + i},
                "identity": {"hostname": hostname, "machine_id": format!("{:032x}", i as u128 * 7919)}})),
            "cpu": ok(json!({"facts": {"model": "Intel(R) Xeon(R) Silver 4210R CPU @ 2.40GHz",
                "socket_count": 2, "core_count": 20, "thread_count": 40}})),
            "memory": ok(json!({"facts": {"total_bytes": 274_877_906_944u64},
                "lists": {"modules": {"key": ["slot"], "parts": modules}}})),
            "disk": ok(json!({"lists": {"disks": {"key": ["serial", "name"], "parts": disks}}})),
            "nic": ok(json!({"lists": {"interfaces": {"key": ["permanent_mac", "name"], "parts": nics}}})),
            "packages": ok(json!({"lists": {"installed": {"key": ["name"], "parts": packages}}})),
            "board": ok(json!({"facts": {"manufacturer": "Supermicro", "product": "X11DPi-N",
                "serial": serial, "uuid": system_uuid},
                "identity": {"serial": serial, "system_uuid": system_uuid}})),
        }
    })
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: retention_sim URL KEY SECRET CLOCK_FILE START [HOSTS=100] [DAYS=365] [PARTS=200] [CONCURRENCY=4]");
        std::process::exit(2);
    }
    let base = args[1].trim_end_matches('/').to_owned();
    let (key, secret, clock) = (args[2].clone(), args[3].clone(), args[4].clone());
    let start: i64 = arg(&args, 5, 0);
    let hosts: usize = arg(&args, 6, 100);
    let days: usize = arg(&args, 7, 365);
    let parts: usize = arg::<usize>(&args, 8, 200).max(17);
    let concurrency: usize = arg(&args, 9, 4);
    let per_day = (parts / 100).max(1);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let url: hyper::Uri = format!("{base}/api/v1/reports")
        .parse()
        .expect("a valid url");
    let path = "/api/v1/reports";
    let mut revs = vec![vec![0u32; parts]; hosts];
    let mut refused = 0usize;
    for day in 0..days {
        let now = start + day as i64 * 86_400;
        let tmp = format!("{clock}.tmp");
        std::fs::write(&tmp, now.to_string()).expect("write the clock");
        std::fs::rename(&tmp, &clock).expect("set the clock");
        if day > 0 {
            // 1 % of each host's parts change today (a different few on each host and day)
            for (i, r) in revs.iter_mut().enumerate() {
                for j in 0..per_day {
                    let p = (day * per_day + j + i * 7) % parts;
                    r[p] += 1;
                }
            }
        }
        let bodies: Arc<Vec<Bytes>> = Arc::new(
            (0..hosts)
                .map(|i| Bytes::from(report(i, day, &revs[i]).to_string()))
                .collect(),
        );
        let next = Arc::new(AtomicUsize::new(0));
        let bad = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, key, secret) =
                (client.clone(), url.clone(), key.clone(), secret.clone());
            let (bodies, next, bad) = (bodies.clone(), next.clone(), bad.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        break;
                    }
                    let body = bodies[i].clone();
                    let nonce = random_hex(16);
                    let sig = sign::signature(secret.as_bytes(), "POST", path, now, &nonce, &body);
                    let req = hyper::Request::post(url.clone())
                        .header("content-type", "application/json")
                        .header(sign::HEADER_KEY, key.as_str())
                        .header(sign::HEADER_TIMESTAMP, now.to_string())
                        .header(sign::HEADER_NONCE, nonce)
                        .header(sign::HEADER_SIGNATURE, sig)
                        .body(Full::new(body))
                        .expect("a valid request");
                    match client.request(req).await {
                        Ok(resp) if resp.status().is_success() => {
                            let _ = resp.into_body().collect().await;
                        }
                        Ok(resp) => {
                            let status = resp.status();
                            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                            eprintln!("report refused: {status} {body:?}");
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("request failed: {e}");
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        refused += bad.load(Ordering::Relaxed);
        if day % 30 == 0 || day + 1 == days {
            eprintln!("day {day}: {hosts} reports sent");
        }
    }
    println!(
        "{} reports ({hosts} hosts x {days} days), {per_day} of {parts} parts changed per host and day, {refused} refused",
        hosts * days
    );
    if refused > 0 {
        std::process::exit(1);
    }
}
