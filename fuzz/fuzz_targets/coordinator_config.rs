//! Arbitrary text through the coordinator's configuration loader
//! (`CoordinatorConfig::from_toml`, what `CoordinatorConfig::load` runs on a file's text).
//!
//! Asserts: no panic; an accepted configuration has a listen address, key epochs and a metrics
//! setting that are usable, and written back as TOML reads back to the same configuration.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ponte_coordinator::config::CoordinatorConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/etc/ponte/coordinator.toml");
    let cfg = match CoordinatorConfig::from_toml(text, path) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.trim().is_empty());
            return;
        }
    };
    assert!(!cfg.key_epochs.is_empty());
    cfg.listen.parse::<std::net::SocketAddr>().expect("an accepted listen address parses");
    cfg.metrics.address().expect("an accepted metrics setting is usable");
    let written = toml::to_string_pretty(&cfg).expect("an accepted configuration can be written back");
    let again = CoordinatorConfig::from_toml(&written, path).unwrap_or_else(|e| panic!("written back, it is refused: {e}\n{written}"));
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&cfg).unwrap(),
        "written back, it reads differently:\n{written}"
    );
});
