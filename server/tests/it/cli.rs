//! The command line: database choice by scheme, the example config, key management.

use std::process::Command;

use crate::support::BIN;

#[test]
fn an_unknown_database_scheme_is_a_clear_fatal_error() {
    let out = Command::new(BIN)
        .args(["--db", "mysql://h/db", "migrate"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unsupported database url scheme \"mysql\""),
        "{err}"
    );
}

#[test]
fn default_config_prints_the_shipped_example() {
    let out = Command::new(BIN)
        .arg("default-config")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/auto-server.example.toml"
    ))
    .expect("example config");
    assert_eq!(String::from_utf8_lossy(&out.stdout), shipped);
}

#[test]
fn the_example_config_is_accepted() {
    let dir = std::env::temp_dir().join(format!("auto-server-it-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = format!("sqlite://{}", dir.join("c.db").display());
    let out = Command::new(BIN)
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/auto-server.example.toml"),
            "--db",
            &db,
            "migrate",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_master_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("auto-server-it-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = format!("sqlite://{}", dir.join("k.db").display());
    let out = Command::new(BIN)
        .args(["--db", &db, "keys", "create", "a"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(dir.join("k.db.master-key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = Command::new(BIN)
        .args(["--db", &db, "keys", "create", "a"])
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}
