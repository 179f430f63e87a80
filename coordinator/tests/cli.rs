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
fn audit_verify_refuses_a_folder_without_a_store() {
    // A mistyped --data-dir must not read as an intact, empty audit log.
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ponte-coordinator"))
        .args(["audit", "verify", "--data-dir", &dir.path().to_string_lossy()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("holds no coordinator store") && e.contains("--data-dir"), "{e}");
    assert!(!dir.path().join("sled").exists(), "verify must not create a store");
}

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("coordinator.toml");
    std::fs::write(&cfg, format!("data_dir = \"data\"\n{extra}[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n")).unwrap();
    cfg
}

fn coordinator(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ponte-coordinator")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn params_estimate_without_encodings_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let cfg = cfg.to_string_lossy();
    let (ok, _, e) = coordinator(&["params", "estimate", "--config", &cfg]);
    assert!(!ok);
    assert!(e.contains("data directory") && e.contains("does not exist") && e.lines().count() == 1, "{e}");

    std::fs::create_dir(dir.path().join("data")).unwrap();
    let (ok, _, e) = coordinator(&["params", "estimate", "--config", &cfg]);
    assert!(!ok);
    assert!(e.contains("the store holds no encodings") && e.contains("nothing to estimate on"), "{e}");

    let (ok, _, e) = coordinator(&["params", "estimate", "--config", &dir.path().join("missing.toml").to_string_lossy()]);
    assert!(!ok && e.contains("--config"), "{e}");

    let (ok, _, e) = coordinator(&["params", "estimate", "--config", &cfg, "--random-pairs", "5"]);
    assert!(!ok && e.contains("--random-pairs 5: must be 10000 to 20000000"), "{e}");

    let (ok, out, _) = coordinator(&["params", "show", "--shipped"]);
    assert!(ok);
    assert_eq!(ponte_coordinator::scoring::FsModel::parse(&out).unwrap(), ponte_coordinator::scoring::FsModel::default_model());
}

/// A stopped coordinator's store with `persons` synthetic persons, two or three noisy copies of
/// each (random filters of the default schema's length, fill 0.4), under key epoch 1.
fn synthetic_store(data_dir: &std::path::Path, persons: u32) {
    use ponte_coordinator::model::{EpochEncoding, ItemKey, RelationshipMeta, StoredItem};
    use rand::{Rng, SeedableRng};
    let bytes = ponte_proto::schema::LinkageSchema::default_schema().clk_bytes();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let store = ponte_coordinator::storage::Store::open(data_dir).unwrap();
    let mut id = 1;
    for p in 0..persons {
        let base: Vec<bool> = (0..bytes * 8).map(|_| rng.random_bool(0.4)).collect();
        for copy in 0..2 + p % 2 {
            let mut clk = vec![0u8; bytes];
            for (i, &set) in base.iter().enumerate() {
                if rng.random_bool(if set { 0.95 } else { 0.03 }) {
                    ponte_proto::bits::set_bit(&mut clk, i);
                }
            }
            let item = StoredItem {
                key: ItemKey { node: format!("node-{copy}"), reference: format!("r{p}") },
                revision: 1,
                encodings: vec![EpochEncoding { epoch: 1, clk, tokens: vec![] }],
                quality_flags: 0,
                relationship: RelationshipMeta {
                    entity_type: 1,
                    unit: "u1".into(),
                    category: 1,
                    tier: 1,
                    status: 1,
                    since_month: 202601,
                    case_manager: false,
                    plan: 0,
                    contact: 0,
                },
                entity_name: String::new(),
                obscured: false,
            };
            store.put_item(id, &item, &[], &[]).unwrap();
            id += 1;
        }
    }
    store.flush().unwrap();
}

#[test]
fn params_estimate_writes_a_model_the_coordinator_reads() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_store(&dir.path().join("data"), 200);
    let cfg = write_config(dir.path(), "");
    let cfg = cfg.to_string_lossy();
    let out = dir.path().join("estimated.toml");
    let out_s = out.to_string_lossy();
    let estimate = |extra: &[&str]| {
        let mut args = vec!["params", "estimate", "--config", &cfg, "--random-pairs", "20000", "--out", &out_s];
        args.extend_from_slice(extra);
        coordinator(&args)
    };

    let (ok, stdout, e) = estimate(&[]);
    assert!(ok, "{e}");
    assert!(stdout.contains("items: 500 of key epoch 1") && stdout.contains("candidate pairs:"), "{stdout}");
    assert!(stdout.contains("What changed from the shipped model") && stdout.contains("prior λ"), "{stdout}");
    assert!(stdout.contains("model_file = ") && stdout.contains("restart the coordinator"), "{stdout}");
    let text = std::fs::read_to_string(&out).unwrap();
    let model = ponte_coordinator::scoring::FsModel::parse(&text).unwrap();
    assert_eq!(model.reference_records, 500);

    // An existing file is kept unless --force.
    let (ok, _, e) = estimate(&[]);
    assert!(!ok && e.contains("exists") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
    let (ok, _, e) = estimate(&["--force", "--epoch", "2"]);
    assert!(!ok && e.contains("epoch 2") && e.contains("epochs present: 1"), "{e}");
    let (ok, _, e) = estimate(&["--force"]);
    assert!(ok, "{e}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text, "the same store and seed give the same model");

    // Put in force, it is what `params show` prints, and the next estimate compares with it.
    let cfg_in_force = write_config(dir.path(), "model_file = \"estimated.toml\"\n");
    let (ok, shown, e) = coordinator(&["params", "show", "--config", &cfg_in_force.to_string_lossy()]);
    assert!(ok, "{e}");
    assert!(shown.contains("estimated.toml"), "{shown}");
    assert_eq!(ponte_coordinator::scoring::FsModel::parse(&shown).unwrap(), model);
    let (ok, stdout, e) = coordinator(&["params", "estimate", "--config", &cfg_in_force.to_string_lossy(), "--random-pairs", "20000"]);
    assert!(ok, "{e}");
    assert!(stdout.contains("What changed from the model in force") && stdout.contains("Nothing written"), "{stdout}");
}
