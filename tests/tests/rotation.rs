//! Key rotation across the demo federation: answers stay identical from epoch 1, through the
//! overlap, to epoch 2 alone — and the coordinator never holds either secret.

use ponte_e2e::*;
use ponte_node::secret::LinkageSecret;

#[test]
fn a_key_rotation_keeps_every_answer_identical_and_no_secret_reaches_the_coordinator() {
    let mut fed = Federation::new();
    fed.start_coordinator();
    let mut scenario = ponte_sim::synth::scenario::demo_scenario(150);
    scenario.seed = 21;
    let generated = ponte_sim::synth::generate(&scenario);
    let mut configs = Vec::new();
    for export in &generated.exports {
        let file = fed.dir.path().join(&export.file_name);
        std::fs::write(&file, &export.csv).unwrap();
        let cfg = fed.node_config(&export.node_id, &export.import);
        for args in [vec!["import", file.to_str().unwrap()], vec!["publish"]] {
            let o = node(&cfg, &args);
            assert!(o.status.success(), "{}", text(&o));
        }
        configs.push(cfg);
    }
    let before: Vec<Vec<String>> = configs.iter().map(|c| all_answers(c)).collect();
    let shown: usize = before.iter().flatten().filter(|l| l.contains("entity_id")).count();
    assert!(shown > 30, "the federation links people: {shown} answers show someone");

    // Rotation: a new secret for epoch 2; the coordinator accepts both epochs.
    let secret1 = fed.secret.clone();
    let secret2 = fed.dir.path().join("linkage-2.secret");
    let o = node(&configs[0], &["secret", "rotate", "--from", secret1.to_str().unwrap(), "--out", secret2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(LinkageSecret::load(&secret2).unwrap().epoch, 2);
    fed.stop_coordinator();
    fed.set_coordinator_epochs(&[1, 2]);
    fed.start_coordinator();

    // Nodes move one by one; answers are checked while the federation is half-way.
    for (i, cfg) in configs.iter().enumerate() {
        edit_node_config(cfg, |c| {
            c.secret_file = secret2.clone();
            c.extra_secret_files = vec![secret1.clone()];
        });
        for args in [vec!["republish"], vec!["publish"]] {
            let o = node(cfg, &args);
            assert!(o.status.success(), "{}", text(&o));
        }
        if i == 1 {
            let midway: Vec<Vec<String>> = configs.iter().map(|c| all_answers(c)).collect();
            assert_eq!(midway, before, "answers changed half-way through the rotation");
        }
    }
    let overlap: Vec<Vec<String>> = configs.iter().map(|c| all_answers(c)).collect();
    assert_eq!(overlap, before, "answers changed while both epochs were in use");

    // Every node has moved: the coordinator drops epoch 1, the nodes forget its secret.
    fed.stop_coordinator();
    fed.set_coordinator_epochs(&[2]);
    fed.start_coordinator();
    for cfg in &configs {
        edit_node_config(cfg, |c| c.extra_secret_files.clear());
    }
    let after: Vec<Vec<String>> = configs.iter().map(|c| all_answers(c)).collect();
    assert_eq!(after, before, "answers changed after the old epoch was dropped");

    // A publication under the dropped epoch is refused with a message naming the epochs.
    edit_node_config(&configs[0], |c| c.secret_file = secret1.clone());
    let o = node(&configs[0], &["republish"]);
    assert!(o.status.success());
    let o = node(&configs[0], &["publish"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("key epoch 1 refused") && text(&o).contains("[2]"), "{}", text(&o));
    edit_node_config(&configs[0], |c| c.secret_file = secret2.clone());

    fed.stop_coordinator();
    let stats = fed.coordinator_cmd(&["stats", "--data-dir", fed.coordinator_data().to_str().unwrap()]);
    let stats = String::from_utf8_lossy(&stats.stdout);
    assert!(!stats.contains("epoch 1"), "epoch-1 encodings were dropped:\n{stats}");
    assert!(stats.contains("epoch 2"), "{stats}");

    // Neither secret, in any form, is anywhere in the coordinator's directory.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for s in [&secret1, &secret2] {
        let secret = LinkageSecret::load(s).unwrap();
        needles.push(secret.bytes().to_vec());
        needles.push(hex::encode(secret.bytes()).into_bytes());
        needles.push(hex::encode_upper(secret.bytes()).into_bytes());
    }
    let mut checked = 0;
    let mut stack = vec![fed.coordinator_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            checked += bytes.len();
            for n in &needles {
                assert!(!bytes.windows(n.len()).any(|w| w == n.as_slice()), "a linkage secret is in {}", p.display());
            }
        }
    }
    assert!(checked > 10_000, "{checked}");

    // And by construction: the coordinator crate does not depend on the node crate (the
    // encoder), and no wire message has a field for a secret.
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../coordinator/Cargo.toml")).unwrap();
    assert!(!manifest.contains("ponte-node"), "the coordinator must not be able to encode");
    let proto = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/proto/ponte/v1/ponte.proto")).unwrap();
    assert!(!proto.lines().any(|l| !l.trim_start().starts_with("//") && l.to_lowercase().contains("secret")));
}
