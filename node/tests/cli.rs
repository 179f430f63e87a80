//! The `ponte-node` binary's command line: help that teaches, errors that say what to fix.
//! (Having an integration test also makes `cargo test` build the binary for the end-to-end tests.)

use std::process::Command;

fn node(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ponte-node")).args(args).output().unwrap()
}

#[test]
fn help_lists_the_commands() {
    let o = node(&["--help"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for cmd in ["import", "publish", "withdraw", "who-else", "serve", "records", "secret", "schema"] {
        assert!(s.contains(cmd), "{cmd} missing from --help:\n{s}");
    }
}

#[test]
fn secret_generate_and_schema_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.secret");
    let o = node(&["secret", "generate", "--out", &out.to_string_lossy(), "--epoch", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = ponte_node::secret::LinkageSecret::load(&out).unwrap();
    assert_eq!(s.epoch, 3);
    let again = node(&["secret", "generate", "--out", &out.to_string_lossy()]);
    assert!(!again.status.success(), "an existing secret is not overwritten without --force");

    let o = node(&["schema", "check"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&ponte_proto::schema::LinkageSchema::default_schema().fingerprint().hex()));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, ponte_proto::schema::DEFAULT_SCHEMA_TOML.replace("clk_bits = 1024", "clk_bits = 1000")).unwrap();
    let o = node(&["schema", "check", &bad.to_string_lossy()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("power of two"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn unknown_purpose_is_explained() {
    let o = node(&["--config", "/nonexistent/node.toml", "who-else", "X", "--purpose", "curiosity"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read the node configuration"));
}
