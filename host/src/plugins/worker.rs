//! Isolation: a collector call in a child worker process (the host re-executing itself), so a
//! collector that segfaults, aborts or spins in its own code yields an error entry and every other
//! collector's data still arrives. Agent mode only: in ssh and salt mode the executor lives in the
//! host process.
//!
//! Protocol: `auto-client __worker --path P --symbol S --timeout-ms N --target NAME`, the options
//! JSON on stdin; one JSON line on stdout: `{"ok": "<data json>"}` or
//! `{"error": {"kind": ..., "message": ...}}`.

use std::{
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use abi_stable::sabi_trait::TD_Opaque;
use plugin_api::{CollectError, Executor_TO};
use serde_json::json;

use crate::{
    plugins::executor::{self, LocalExecutor},
    plugins::file::{Origin, PluginSpec},
    plugins::registry::{CollectResult, LoadOptions, LoadedPlugin, PluginRegistry},
};

/// The worker side: loads one plugin, runs it once, prints the result. Returns the exit code.
pub fn serve(path: PathBuf, symbol: String, timeout_ms: u64, target: String) -> u8 {
    // On SIGTERM from the parent (the collector ran out of time): kill our commands, then leave.
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM]) {
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                executor::kill_all();
                std::process::exit(124);
            }
        });
    }
    let mut options = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut options);
    let timeout = Duration::from_millis(timeout_ms);
    let spec = PluginSpec {
        name: "worker".to_string(),
        path,
        symbol: Some(symbol),
        enabled: true,
        timeout,
        options_json: if options.trim().is_empty() {
            "{}".to_string()
        } else {
            options
        },
        origin: Origin::Configured,
        isolation: None,
    };
    let registry = PluginRegistry::load(
        vec![spec],
        &LoadOptions {
            abi_cache: crate::plugins::abi_cache::default_path(),
            ..LoadOptions::default()
        },
    );
    let answer = match (registry.loaded.first(), registry.failed.first()) {
        (Some(plugin), _) => {
            let executor = LocalExecutor {
                target_name: target,
                deadline: Instant::now() + timeout,
            };
            match plugin.collect(Executor_TO::from_ptr(
                abi_stable::sabi_types::RRef::new(&executor),
                TD_Opaque,
            )) {
                Ok(data) => json!({ "ok": data }),
                Err(e) => json!({ "error": { "kind": e.kind, "message": e.message } }),
            }
        }
        (None, Some(f)) => json!({ "error": { "kind": "load", "message": f.error } }),
        (None, None) => json!({ "error": { "kind": "load", "message": "nothing loaded" } }),
    };
    println!("{answer}");
    executor::kill_all();
    0
}

/// The host side: runs `plugin` in a worker until `deadline`.
pub fn collect(plugin: &LoadedPlugin, deadline: Instant, target: &str) -> CollectResult {
    let exe = std::env::current_exe()
        .map_err(|e| CollectError::new("io", format!("cannot find the auto-client binary: {e}")))?;
    let timeout = deadline.saturating_duration_since(Instant::now());
    let mut cmd = Command::new(exe);
    cmd.arg("__worker")
        .arg("--path")
        .arg(&plugin.spec.path)
        .arg("--symbol")
        .arg(&plugin.symbol)
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string())
        .arg("--target")
        .arg(target)
        .env("RUST_LOG", "off");
    let out = executor::run_process(
        cmd,
        plugin.spec.options_json.as_bytes(),
        timeout,
        "collector worker",
        true,
    )
    .map_err(|e| {
        if e.kind.as_str() == "timeout" {
            CollectError::new(
                "timeout",
                format!(
                    "collector did not finish in {}",
                    humantime::format_duration(Duration::from_millis(timeout.as_millis() as u64))
                ),
            )
        } else {
            CollectError::from(e)
        }
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) if v.get("ok").and_then(|d| d.as_str()).is_some() => {
            Ok(v["ok"].as_str().unwrap_or_default().to_string())
        }
        Ok(v) if v.get("error").is_some() => Err(CollectError::new(
            v["error"]["kind"].as_str().unwrap_or("failed"),
            v["error"]["message"].as_str().unwrap_or(""),
        )),
        _ => {
            let how = match (out.status.code(), out.status.signal()) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}{}", signal_name(sig)),
                (None, None) => "ended".to_string(),
            };
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("").trim();
            Err(CollectError::new(
                "crashed",
                format!(
                    "collector worker {how} without a result{}",
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(": {last}")
                    }
                ),
            ))
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGFPE => " (SIGFPE)",
        _ => "",
    }
}

/// Decides, per plugin, whether it runs isolated.
pub fn mark_isolated(registry: &mut PluginRegistry, global: crate::Isolation) {
    for p in &mut registry.loaded {
        mark(p, global);
    }
}

/// [`mark_isolated`] for one plugin.
pub fn mark(p: &mut LoadedPlugin, global: crate::Isolation) {
    p.isolated = match p.spec.isolation.unwrap_or(global) {
        crate::Isolation::None => false,
        crate::Isolation::Process => true,
        crate::Isolation::DropIns => p.spec.origin == Origin::DropIn,
    };
}
