use salt_exec::SaltClient;

pub fn read_file(client: &SaltClient) {
    let got = client
        .read_file("minion-03", "/proc/meminfo")
        .expect("reads");
    assert!(String::from_utf8_lossy(&got).starts_with("MemTotal:"));

    // binary and exact: bytes that are no UTF-8, and a trailing newline
    let path = std::env::temp_dir().join(format!("salt-exec-it-{}.bin", std::process::id()));
    let bytes: Vec<u8> = vec![0, 1, 0xff, 0xfe, b'x', b'\n'];
    std::fs::write(&path, &bytes).expect("temp file written");
    let got = client.read_file("minion-01", &path.to_string_lossy());
    let _ = std::fs::remove_file(&path);
    assert_eq!(got.expect("reads"), bytes);
}

pub fn missing_file(client: &SaltClient) {
    let err = client.read_file("minion-02", "/no/such/file").unwrap_err();
    assert_eq!(err.kind(), "command_failed", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("minion-02") && text.contains("/no/such/file"),
        "{text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
}
