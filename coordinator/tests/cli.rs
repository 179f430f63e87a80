//! The `ponte-coordinator` binary's command line.
//! (Having an integration test also makes `cargo test` build the binary for the end-to-end tests.)

use std::process::Command;

#[test]
fn help_and_config_errors() {
    let bin = env!("CARGO_BIN_EXE_ponte-coordinator");
    let o = Command::new(bin).arg("--help").output().unwrap();
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("serve") && s.contains("audit"), "{s}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "listen = \"nowhere\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n").unwrap();
    let o = Command::new(bin).args(["serve", "--config", &cfg.to_string_lossy()]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not an address"), "{}", String::from_utf8_lossy(&o.stderr));

    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\n[tls]\nca=\"missing-ca.pem\"\ncert=\"b\"\nkey=\"c\"\n").unwrap();
    let o = Command::new(bin).args(["serve", "--config", &cfg.to_string_lossy()]).output().unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("federation CA certificate") && e.contains("ponte-certs-dev"), "{e}");
}

#[test]
fn audit_verify_on_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ponte-coordinator"))
        .args(["audit", "verify", "--data-dir", &dir.path().to_string_lossy()])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("intact: 0 entries"));
}
