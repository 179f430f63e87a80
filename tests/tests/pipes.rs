//! Both binaries stop quietly when the reader of their stdout has gone (`… | head`): no panic,
//! exit code 0 for commands that only read. Stdout is a pipe whose reading end is closed before
//! the command writes, so every write meets a broken pipe.

use std::process::{Command, Stdio};

use ponte_e2e::{Federation, bin_dir, default_import, node, small_export, text};

/// Runs `bin args` with stdout a pipe nobody reads; returns the exit code and stderr.
fn closed_stdout(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(bin_dir().join(bin)).args(args).stdout(writer).stderr(Stdio::piped()).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn read_only_commands_of_both_binaries_stop_quietly_on_a_closed_stdout() {
    let mut fed = Federation::new();
    fed.start_coordinator();
    let asl = fed.node_config("asl-lecce", &default_import());
    let e = small_export(
        fed.dir.path(),
        "asl.csv",
        &["P1;R1;Rossi;Mario;M;1940-02-11;Lecce;;cure_domiciliari;attiva;2024-03-01;distretto-lecce;S".to_string()],
    );
    assert!(node(&asl, &["import", e.to_str().unwrap()]).status.success());
    let o = node(&asl, &["publish"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = node(&asl, &["who-else", "P1", "--operator", "op-1"]);
    assert!(o.status.success(), "{}", text(&o));
    fed.stop_coordinator();

    let data = fed.coordinator_data();
    let data = data.to_str().unwrap();
    let cfg = asl.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 7] = [
        ("ponte-coordinator", vec!["stats", "--data-dir", data]),
        ("ponte-coordinator", vec!["audit", "list", "--data-dir", data]),
        ("ponte-coordinator", vec!["audit", "verify", "--data-dir", data]),
        ("ponte-coordinator", vec!["policy", "default"]),
        ("ponte-coordinator", vec!["params", "show", "--shipped"]),
        ("ponte-node", vec!["--config", cfg, "records", "list"]),
        ("ponte-node", vec!["--config", cfg, "report"]),
    ];
    for (bin, args) in cases {
        let (code, err) = closed_stdout(bin, &args);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{bin} {args:?}: {err}");
        assert_eq!(code, Some(0), "{bin} {args:?}: {err}");
    }
    // The commands still work with a reader.
    let o = fed.coordinator_cmd(&["stats", "--data-dir", data]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("asl-lecce\t1"), "{}", text(&o));
}
