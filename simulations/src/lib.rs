//! Ponte's researchers' simulator: synthetic Italian populations with realistic errors, their
//! per-entity exports and truth ([`synth`]), and the demo federation ([`demo`]).

pub mod attack;
pub mod bench;
pub mod bench_kernel;
pub mod bench_load;
pub mod bench_scale;
pub mod bench_quality;
pub mod demo;
pub mod evaluation;
pub mod report;
pub mod run;
pub mod synth;

use std::path::PathBuf;

/// Finds the `ponte-node` and `ponte-coordinator` binaries of the same workspace and profile as
/// the running executable. They are built with cargo when missing, or — with `refresh`, as the
/// demo does under `cargo run` — whenever cargo is at hand, so that they are never stale.
/// (`cargo test --workspace` builds them itself: the node and coordinator crates have
/// integration tests, which makes cargo build their binaries before any test runs.)
pub fn locate_binaries(refresh: bool) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").ok().or_else(|| option_env!("CARGO").map(String::from));
    let missing = !dir.join("ponte-node").exists() || !dir.join("ponte-coordinator").exists();
    if let Some(cargo) = cargo.filter(|_| missing || (refresh && std::env::var_os("CARGO").is_some())) {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "--manifest-path", manifest, "-p", "ponte-node", "-p", "ponte-coordinator"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status()?;
        anyhow::ensure!(status.success(), "building ponte-node and ponte-coordinator failed");
    }
    Ok(dir)
}
