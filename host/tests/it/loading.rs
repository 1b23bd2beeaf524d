//! Loading real plugin libraries: what is refused, with what message, and that every other plugin
//! still runs; panics, hangs and drop-ins.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{self, collect, entry, misbehaving, workspace_root};

fn status<'a>(report: &'a Value, plugin: &str) -> &'a str {
    report["plugins"][plugin]["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no plugin {plugin} in the report: {report}"))
}

fn error_message(report: &Value, plugin: &str) -> String {
    report["plugins"][plugin]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Builds the misbehaving test plugin against a copy of `plugin-api` changed by `edit_lib` /
/// `edit_version`: a plugin built against an interface the host does not have.
fn plugin_against_altered_interface(
    case: &str,
    edit_lib: fn(String) -> String,
    version: &str,
) -> PathBuf {
    let root = workspace_root();
    let dir = root.join("target/test-fixtures").join(case);
    let api = dir.join("plugin-api");
    let collector = dir.join("collector");
    for d in [api.join("src"), collector.join("src")] {
        std::fs::create_dir_all(&d).expect("mkdir");
    }
    for entry in std::fs::read_dir(root.join("plugin-api/src")).expect("plugin-api/src") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().expect("file name").to_owned();
        let text = std::fs::read_to_string(&path).expect("read plugin-api");
        let text = if name == "lib.rs" {
            edit_lib(text)
        } else {
            text
        };
        std::fs::write(api.join("src").join(name), text).expect("write");
    }
    std::fs::write(
        api.join("Cargo.toml"),
        format!(
            "[package]\nname = \"plugin-api\"\nversion = \"{version}\"\nedition = \"2021\"\n\n\
             [dependencies]\nabi_stable = \"0.11.3\"\nserde_json = \"1\"\n\
             auto-proto = {{ path = {:?} }}\n",
            root.join("proto").display().to_string()
        ),
    )
    .expect("write");
    std::fs::copy(
        root.join("test-plugins/misbehave/src/lib.rs"),
        collector.join("src/lib.rs"),
    )
    .expect("copy collector");
    std::fs::write(
        collector.join("Cargo.toml"),
        // A package (and library file) of its own a case: the cases share one target directory.
        format!(
            "[package]\nname = \"altered-{case}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nplugin-api = {{ path = \"../plugin-api\" }}\n\n[workspace]\n"
        ),
    )
    .expect("write");
    let manifest = collector.join("Cargo.toml");
    let libs = support::build_cdylibs(
        &["--manifest-path", manifest.to_str().expect("utf-8 path")],
        Some(&root.join("target/test-fixtures/target")),
    );
    libs.get(&format!("altered-{case}"))
        .expect("altered collector built")
        .clone()
}

/// The misbehaving plugin built against the same interface version with the field order of
/// `PluginError` swapped: only the layout check can see it.
fn plugin_with_a_changed_type() -> PathBuf {
    plugin_against_altered_interface(
        "changed-type",
        |text| {
            let swapped = text.replace(
                "pub struct PluginError {\n    pub kind: RString,\n    pub message: RString,\n}",
                "pub struct PluginError {\n    pub message: RString,\n    pub kind: RString,\n}",
            );
            assert_ne!(
                swapped, text,
                "the edit must apply to plugin-api/src/lib.rs"
            );
            swapped
        },
        "1.0.0",
    )
}

#[test]
fn a_plugin_built_against_a_changed_type_is_refused_and_the_others_run() {
    // The same interface version, but a field order of PluginError swapped: the layout check sees it.
    let lib = plugin_with_a_changed_type();
    let toml = entry("altered", &lib, "symbol = \"misbehave_v1\"") + &misbehaving("good", "ok", "");
    let (run, _dir) = collect(&toml);
    assert_eq!(
        run.code, 1,
        "a failed plugin gives exit code 1; stderr: {}",
        run.stderr
    );
    let report = run.report();
    assert_eq!(status(&report, "good"), "ok");
    assert_eq!(status(&report, "altered"), "error");
    assert_eq!(report["plugins"]["altered"]["error"]["kind"], "load");
    let msg = error_message(&report, "altered");
    assert!(msg.starts_with("plugin altered ("), "{msg}");
    assert!(
        msg.contains("incompatible plugin interface (type layout differs)"),
        "{msg}"
    );
    // On stderr: one line that names the plugin and the cause.
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("plugin altered"))
        .collect();
    assert_eq!(lines.len(), 1, "stderr: {}", run.stderr);
    assert!(
        lines[0].contains("incompatible plugin interface"),
        "{}",
        lines[0]
    );
}

/// The layout checks already passed are remembered on disk (`AUTO_CLIENT_ABI_CACHE`), so the next
/// process does not repeat them: only for a library whose times are settled (`abi_cache::SETTLE`,
/// 3 s). A library written over in place afterwards, its modification time put back as `cp -p`
/// would, is checked again and refused, settled or not.
#[test]
fn a_library_checked_before_then_written_over_is_checked_again_and_refused() {
    const SETTLE: Duration = Duration::from_millis(3_100);
    let altered = plugin_with_a_changed_type();
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = dir.path().join("collector.so");
    std::fs::copy(support::misbehave(), &lib).expect("copy the good library");
    let cache = dir.path().join("cache").join("abi-checked");
    let toml = dir.path().join("plugins.toml");
    std::fs::write(
        &toml,
        entry(
            "x",
            &lib,
            "symbol = \"misbehave_v1\"\noptions = { behaviour = \"ok\" }",
        ),
    )
    .expect("write plugins.toml");
    let run = || -> support::Run {
        Command::new(support::AUTO_CLIENT)
            .arg("--plugins")
            .arg(&toml)
            .args(["collect", "--format", "json"])
            .current_dir(dir.path())
            .env("AUTO_CLIENT_ABI_CACHE", &cache)
            .env("RUST_LOG", "auto_client::plugins::registry=debug")
            .output()
            .expect("auto-client runs")
            .into()
    };
    let lines = || {
        std::fs::read_to_string(&cache)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    const SKIPPED: &str = "type layout checked before by this host binary";

    let fresh = run();
    assert_eq!(status(&fresh.report(), "x"), "ok", "{}", fresh.stderr);
    assert_eq!(lines(), 0, "a library written just now is not written down");

    std::thread::sleep(SETTLE);
    let first = run();
    assert_eq!(status(&first.report(), "x"), "ok", "{}", first.stderr);
    assert!(!first.stderr.contains(SKIPPED), "{}", first.stderr);
    assert_eq!(lines(), 1, "the check that passed is written down");

    let second = run();
    assert_eq!(status(&second.report(), "x"), "ok", "{}", second.stderr);
    assert!(second.stderr.contains(SKIPPED), "{}", second.stderr);

    // Written over in place (same inode), its modification time put back.
    let mtime = std::fs::metadata(&lib)
        .expect("stat")
        .modified()
        .expect("mtime");
    std::fs::write(
        &lib,
        std::fs::read(&altered).expect("read the altered library"),
    )
    .expect("write over the library");
    std::fs::File::options()
        .write(true)
        .open(&lib)
        .and_then(|f| f.set_modified(mtime))
        .expect("put the modification time back");
    for when in ["just written over", "settled"] {
        if when == "settled" {
            std::thread::sleep(SETTLE);
        }
        let again = run();
        assert!(!again.stderr.contains(SKIPPED), "{when}: {}", again.stderr);
        assert_eq!(
            status(&again.report(), "x"),
            "error",
            "{when}: {}",
            again.stderr
        );
        let msg = error_message(&again.report(), "x");
        assert!(msg.contains("(type layout differs)"), "{when}: {msg}");
    }
    assert_eq!(lines(), 1, "a check that failed is not written down");
}

#[test]
fn a_plugin_built_against_another_interface_major_is_refused() {
    let lib = plugin_against_altered_interface("major-2", |text| text, "2.0.0");
    let toml = entry("future", &lib, "symbol = \"misbehave_v1\"") + &misbehaving("good", "ok", "");
    let (run, _dir) = collect(&toml);
    let report = run.report();
    assert_eq!(status(&report, "good"), "ok");
    let msg = error_message(&report, "future");
    assert!(
        msg.contains("version mismatch") && msg.contains("2.0.0"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn missing_file_wrong_symbol_foreign_library_and_truncated_file_are_each_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let truncated = dir.path().join("truncated.so");
    let bytes = std::fs::read(support::misbehave()).expect("read plugin");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write truncated");
    let foreign = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("libm exists on a Debian machine");
    let toml = entry("missing", Path::new("/nonexistent/collector.so"), "")
        + &entry(
            "nosymbol",
            &support::misbehave(),
            "symbol = \"no_such_symbol\"",
        )
        + &entry("foreign", &foreign, "symbol = \"cos\"")
        + &entry("truncated", &truncated, "symbol = \"misbehave_v1\"")
        + &misbehaving("good", "ok", "");
    let run = support::run_with(dir.path(), &toml, &["collect", "--format", "json"]);
    assert_eq!(run.code, 1);
    let report = run.report();
    assert_eq!(status(&report, "good"), "ok");
    for (plugin, cause) in [
        ("missing", "cannot open: No such file or directory"),
        ("nosymbol", "symbol no_such_symbol not found"),
        ("foreign", "no valid abi_stable header under symbol cos"),
        ("truncated", "truncated or damaged library"),
    ] {
        assert_eq!(status(&report, plugin), "error");
        let msg = error_message(&report, plugin);
        assert!(msg.contains(&format!("plugin {plugin} (")), "{msg}");
        assert!(msg.contains(cause), "{plugin}: {msg}");
        let lines = run
            .stderr
            .lines()
            .filter(|l| l.contains(&format!("plugin {plugin} (")))
            .count();
        assert_eq!(lines, 1, "one stderr line for {plugin}: {}", run.stderr);
    }
}

#[test]
fn a_panicking_collector_gives_an_error_entry_and_the_others_report() {
    let toml = misbehaving("boom", "panic", "") + &misbehaving("good", "ok", "");
    let (run, _dir) = collect(&toml);
    assert_eq!(run.code, 1);
    let report = run.report();
    assert_eq!(report["plugins"]["boom"]["error"]["kind"], "panic");
    let msg = error_message(&report, "boom");
    assert!(
        msg.contains("misbehave was told to panic") && msg.contains("src/lib.rs:"),
        "{msg}"
    );
    assert_eq!(
        report["plugins"]["good"]["data"]["facts"]["behaviour"],
        "ok"
    );
}

#[test]
fn a_hung_command_is_killed_at_the_collector_timeout() {
    // A unique sleep length to find the process by.
    let toml = entry(
        "hang",
        &support::misbehave(),
        "symbol = \"misbehave_v1\"\ntimeout = \"700ms\"\noptions = { behaviour = \"hang_command\", sleep = \"97.0713\" }",
    ) + &misbehaving("good", "ok", "");
    let started = Instant::now();
    let (run, _dir) = collect(&toml);
    let took = started.elapsed();
    let report = run.report();
    assert_eq!(report["plugins"]["hang"]["error"]["kind"], "timeout");
    // The executor (the command) or the runner (the collector) reports it, whichever is first.
    assert!(error_message(&report, "hang").contains("did not finish in"));
    assert_eq!(status(&report, "good"), "ok");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let left = Command::new("pgrep")
        .args(["-f", "sleep 97.0713"])
        .output()
        .expect("pgrep runs");
    assert!(
        left.stdout.is_empty(),
        "the hung command was left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn a_collector_spinning_in_its_own_code_is_abandoned_at_its_timeout() {
    let toml = misbehaving("spin", "spin", "timeout = \"300ms\"") + &misbehaving("good", "ok", "");
    let (run, _dir) = collect(&toml);
    let report = run.report();
    assert_eq!(report["plugins"]["spin"]["error"]["kind"], "timeout");
    assert_eq!(report["plugins"]["spin"]["duration_ms"], 300);
    assert_eq!(status(&report, "good"), "ok");
}

#[test]
fn a_separately_built_collector_dropped_into_a_dir_is_loaded() {
    let root = workspace_root();
    let manifest = root.join("tests/fixtures/dropin-collector/Cargo.toml");
    let libs = support::build_cdylibs(
        &["--manifest-path", manifest.to_str().expect("utf-8 path")],
        Some(&root.join("target/test-fixtures/target")),
    );
    let built = libs.get("dropin-uptime").expect("drop-in built");
    let dir = tempfile::tempdir().expect("tempdir");
    let dropdir = dir.path().join("plugins.d");
    std::fs::create_dir(&dropdir).expect("mkdir");
    // Installed the way the README says: write, then rename.
    std::fs::copy(built, dropdir.join(".uptime.tmp")).expect("copy");
    std::fs::rename(
        dropdir.join(".uptime.tmp"),
        dropdir.join("libdropin_uptime.so"),
    )
    .expect("rename");
    let toml = "dirs = [\"plugins.d\"]\n".to_string() + &misbehaving("good", "ok", "");
    let run = support::run_with(dir.path(), &toml, &["collect", "--format", "json"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let report = run.report();
    let uptime = &report["plugins"]["uptime"];
    assert_eq!(uptime["status"], "ok", "{report}");
    assert_eq!(uptime["version"], "0.3.0");
    assert!(uptime["data"]["volatile"]["uptime_seconds"]
        .as_u64()
        .is_some_and(|s| s > 0));
    assert!(uptime["data"]["facts"]["load_1"].is_number(), "{uptime}");
    let listing = support::run_with(dir.path(), &toml, &["plugins", "--format", "json"]);
    let list: Value = serde_json::from_str(&listing.stdout).expect("plugins json");
    assert!(list
        .as_array()
        .expect("array")
        .iter()
        .any(|p| p["name"] == "uptime" && p["status"] == "loaded"));
}

#[test]
fn the_plugins_command_lists_loaded_failed_and_disabled() {
    let toml = misbehaving("good", "ok", "")
        + &entry("off", &support::misbehave(), "enabled = false")
        + &entry("missing", Path::new("/nonexistent.so"), "");
    let dir = tempfile::tempdir().expect("tempdir");
    let run = support::run_with(dir.path(), &toml, &["plugins", "--format", "json"]);
    assert_eq!(run.code, 1);
    let list: Value = serde_json::from_str(&run.stdout).expect("json");
    let by_name = |n: &str| {
        list.as_array()
            .expect("array")
            .iter()
            .find(|p| p["name"] == n)
            .unwrap_or_else(|| panic!("{n} not listed"))
            .clone()
    };
    assert_eq!(by_name("good")["status"], "loaded");
    assert_eq!(by_name("good")["symbol"], "misbehave_v1");
    assert_eq!(by_name("good")["version"], "0.1.0");
    assert_eq!(by_name("off")["status"], "disabled");
    assert_eq!(by_name("missing")["status"], "failed");
    let table = support::run_with(dir.path(), &toml, &["plugins"]);
    assert!(
        table.stdout.contains("good") && table.stdout.contains("FAILED"),
        "{}",
        table.stdout
    );
}

#[test]
fn a_broken_plugins_file_is_fatal_with_one_line() {
    let (run, _dir) = collect("[plugins.cpu]\npath = 7\n");
    assert_eq!(run.code, 2);
    let line = run.stderr.trim();
    assert!(
        line.starts_with("auto-client: error:") && line.contains("plugins.toml"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
}

#[test]
fn a_plugin_file_writable_by_others_is_refused_like_sshd_strictmodes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let lax = dir.path().join("lax.so");
    std::fs::copy(support::misbehave(), &lax).expect("copy");
    std::fs::set_permissions(&lax, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let toml = entry("lax", &lax, "symbol = \"misbehave_v1\"") + &misbehaving("good", "ok", "");
    let run = support::run_with(dir.path(), &toml, &["collect", "--format", "json"]);
    let report = run.report();
    assert_eq!(status(&report, "good"), "ok");
    let msg = error_message(&report, "lax");
    assert!(
        msg.contains("refused")
            && msg.contains("writable by every user")
            && msg.contains("chmod go-w"),
        "{msg}"
    );
    // A group-writable drop-in directory is refused the same way.
    std::fs::set_permissions(&lax, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let run = support::run_with(dir.path(), &toml, &["collect", "--format", "json"]);
    let msg = error_message(&run.report(), "lax");
    assert!(
        msg.contains("directory") && msg.contains("writable by its group"),
        "{msg}"
    );
}
