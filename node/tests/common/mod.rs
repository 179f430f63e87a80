//! A node site for tests: a temporary folder with a configuration, a linkage secret and a data
//! directory, and helpers that run the real `ponte-node` binary against it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ponte_node::config::NodeConfig;
use ponte_node::node::Node;
use ponte_node::store::{LocalRelationship, OutboxOp};

pub const HEADER: &str = "record_id;relationship_id;surname;given_names;sex;birth_date;birthplace;codice_fiscale;service;status;since;unit;case_manager;anonimo";

pub fn node_bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ponte-node")).args(args).output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Site {
    /// A site of node `asl-lecce` (an ASL) whose export has a `never_encode` column named
    /// `anonimo` when `never_encode` is set. `tls` names the files of a federation when the
    /// test talks to a coordinator; otherwise the paths point nowhere (offline commands never
    /// read them).
    pub fn new(never_encode: bool, coordinator: &str, tls: Option<(&Path, &Path, &Path)>) -> Site {
        Site::of_node(("asl-lecce", "asl", "ASL Lecce"), None, never_encode, coordinator, tls)
    }

    /// A site of node `(node_id, entity_type, entity_name)`, like [`Site::new`]. `secret` is the
    /// federation's linkage secret file to copy (nodes that must link share one); a new one is
    /// generated when absent.
    pub fn of_node(
        (node_id, entity_type, entity_name): (&str, &str, &str),
        secret_from: Option<&Path>,
        never_encode: bool,
        coordinator: &str,
        tls: Option<(&Path, &Path, &Path)>,
    ) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("linkage.secret");
        match secret_from {
            Some(from) => {
                std::fs::copy(from, &secret).unwrap();
            }
            None => ponte_node::secret::LinkageSecret::generate(1).save(&secret).unwrap(),
        }
        let (ca, cert, key) = match tls {
            Some((a, b, c)) => (a.to_path_buf(), b.to_path_buf(), c.to_path_buf()),
            None => (dir.path().join("ca.pem"), dir.path().join("node.pem"), dir.path().join("node.key")),
        };
        let never = if never_encode { "never_encode = \"anonimo\"\n" } else { "" };
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!(
                r#"node_id = "{node_id}"
entity_name = "{entity_name}"
entity_type = "{entity_type}"
coordinator = "{coordinator}"
data_dir = "data"
secret_file = "linkage.secret"

[tls]
ca = {ca:?}
cert = {cert:?}
key = {key:?}

[sync]
timeout_secs = 2

[import]
date_format = "%Y-%m-%d"

[import.columns]
record_id = "record_id"
relationship_id = "relationship_id"
surname = "surname"
given_names = "given_names"
sex = "sex"
birth_date = "birth_date"
birthplace = "birthplace"
codice_fiscale = "codice_fiscale"
service = "service"
status = "status"
since = "since"
unit = "unit"
case_manager = "case_manager"
{never}"#
            ),
        )
        .unwrap();
        Site { dir, config }
    }

    /// The site's linkage secret file.
    pub fn secret_file(&self) -> PathBuf {
        self.dir.path().join("linkage.secret")
    }

    /// An offline site: the coordinator address refuses connections.
    pub fn offline(never_encode: bool) -> Site {
        Site::new(never_encode, "https://127.0.0.1:9", None)
    }

    /// Runs `ponte-node --config <site> args…`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--config", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        node_bin(&all)
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "ponte-node {args:?} failed:\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "ponte-node {args:?} should have failed:\n{}", text(&o));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// Imports rows (`HEADER` columns) through the binary.
    pub fn import(&self, name: &str, rows: &[&str]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
        self.ok(&["--json", "import", path.to_str().unwrap()])
    }

    /// `status --json`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(self.ok(&["--json", "status"]).trim()).unwrap()
    }

    /// Opens the node in this process (no binary may run on the site meanwhile).
    pub fn open(&self) -> Node {
        Node::open(NodeConfig::load(&self.config).unwrap()).unwrap()
    }

    /// The queued changes, oldest first.
    pub fn outbox(&self) -> Vec<OutboxOp> {
        self.open().store.outbox_head(10_000).unwrap().into_iter().map(|(_, op)| op).collect()
    }

    pub fn relationship(&self, id: &str) -> LocalRelationship {
        self.open().store.get_relationship(id).unwrap().unwrap_or_else(|| panic!("no relationship {id}"))
    }
}

/// Rows of two people at the ASL: Rossi (cure domiciliari) and Quarta (RSA).
pub const ROSSI: &str = "P1;R1;Rossi;Mario;M;1940-02-11;Lecce;;cure_domiciliari;attiva;2024-03-01;distretto-lecce;S;N";
pub const QUARTA: &str = "P2;R2;Quarta;Addolorata;F;1935-07-30;Galatina;;residenziale_rsa;attiva;2023-01-15;distretto-lecce;N;N";
