//! Arbitrary text through the node's configuration loader (`NodeConfig::from_toml`, what
//! `NodeConfig::load` runs on a file's text).
//!
//! Asserts: no panic; an accepted configuration passes its own check again and, written back as
//! TOML (as the tests and operators do), reads back to the same configuration.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ponte_node::config::NodeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/etc/ponte/node.toml");
    let cfg = match NodeConfig::from_toml(text, path) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.0.trim().is_empty());
            return;
        }
    };
    cfg.check().expect("an accepted configuration passes its check again");
    let written = toml::to_string_pretty(&cfg).expect("an accepted configuration can be written back");
    let again = NodeConfig::from_toml(&written, path).unwrap_or_else(|e| panic!("written back, it is refused: {e}\n{written}"));
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&cfg).unwrap(),
        "written back, it reads differently:\n{written}"
    );
});
