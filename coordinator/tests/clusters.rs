//! The coordinator in process (real sled store, no network): who-else answers follow the
//! clusters as items are published, withdrawn and updated, and cluster ids survive a restart;
//! the metrics count what happened, refusals by reason.

use ponte_coordinator::config::{CoordinatorConfig, MetricsConfig, TlsConfig};
use ponte_coordinator::model::ItemKey;
use ponte_coordinator::federation::Federation as Coordinator;
use ponte_proto::identity::{PeerIdentity, Role};
use ponte_proto::schema::LinkageSchema;
use ponte_proto::v1;

fn config(dir: &std::path::Path) -> CoordinatorConfig {
    CoordinatorConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        key_epochs: vec![1],
        schema_file: None,
        model_file: None,
        policy_file: None,
        tls: TlsConfig { ca: "unused".into(), cert: "unused".into(), key: "unused".into() },
        metrics: MetricsConfig::off(),
        limits: Default::default(),
        storage: ponte_coordinator::config::StorageConfig { write_reserve_bytes: 0, ballast_bytes: 0 },
        connections: Default::default(),
    }
}

fn node(id: &str, entity_type: v1::EntityType) -> PeerIdentity {
    PeerIdentity { id: id.into(), role: Role::Node { entity_type }, display_name: id.to_uppercase() }
}

/// A CLK with bits `start .. start + 400` set, and the given tokens.
fn item(reference: &str, revision: u64, start: usize, tokens: &[(v1::TokenKind, u8)], entity_type: v1::EntityType) -> v1::PublishedItem {
    let schema = LinkageSchema::default_schema();
    let mut clk = vec![0u8; schema.clk_bytes()];
    let bits = clk.len() * 8;
    for b in start..start + 400 {
        ponte_proto::bits::set_bit(&mut clk, b % bits);
    }
    v1::PublishedItem {
        reference: reference.into(),
        revision,
        obscured: false,
        encoding: Some(v1::IdentityEncoding {
            clk,
            tokens: tokens.iter().map(|(k, v)| v1::ExactToken { kind: *k as i32, value: vec![*v; 32] }).collect(),
            quality_flags: 0,
            field_filters: vec![],
        }),
        relationship: Some(v1::Relationship {
            entity_type: entity_type as i32,
            unit: "servizi-sociali".into(),
            category: v1::ServiceCategory::SegretariatoSociale as i32,
            tier: 0,
            status: v1::RelationshipStatus::Attiva as i32,
            since_month: 202601,
            case_manager: false,
            plan: 0,
            contact: 0,
        }),
    }
}

struct Fed {
    c: Coordinator,
    batch: u64,
}

impl Fed {
    fn publish(&mut self, who: &PeerIdentity, items: Vec<v1::PublishedItem>) {
        self.batch += 1;
        let schema = LinkageSchema::default_schema();
        let batch = v1::PublishBatch {
            node_id: who.id.clone(),
            schema_fingerprint: schema.fingerprint().0.to_vec(),
            key_epoch: 1,
            batch_id: self.batch,
            items,
        };
        self.c.publish(who, &batch, None).unwrap();
    }

    fn who_else(&self, who: &PeerIdentity, reference: &str) -> Vec<(String, i32)> {
        let q = v1::WhoElseQuestion {
            node_id: who.id.clone(),
            anchor_reference: reference.into(),
            purpose: v1::Purpose::ContinuitaAssistenziale as i32,
            operator_role: v1::OperatorRole::AssistenteSociale as i32,
            operator_id: "op-1".into(),
            break_glass_reason: 0,
        };
        let a = self.c.who_else(who, &q).unwrap();
        a.relationships.into_iter().map(|r| (r.entity_id, r.band)).collect()
    }

    fn cluster(&self, who: &PeerIdentity, reference: &str) -> u64 {
        self.c.cluster_of(&ItemKey { node: who.id.clone(), reference: reference.into() }).unwrap()
    }
}

#[test]
fn who_else_follows_clusters_through_withdrawal_update_and_restart() {
    use v1::EntityType::{Asl, Comune};
    use v1::TokenKind::{CodiceFiscale, Stp};
    let dir = tempfile::tempdir().unwrap();
    let schema = LinkageSchema::default_schema();
    let (asl, lecce, galatina) = (node("asl-x", Asl), node("comune-y", Comune), node("comune-z", Comune));
    let mut fed = Fed { c: Coordinator::open(&config(dir.path()), &schema).unwrap(), batch: 0 };
    let certain = v1::MatchBand::Certain as i32;
    let probable = v1::MatchBand::Probable as i32;

    // a (ASL) and b (Lecce) share a codice fiscale and an identity; c (Galatina) shares only an
    // STP code with b, its filter unlike a's: b bridges the person's cluster.
    fed.publish(&asl, vec![item("a1", 1, 0, &[(CodiceFiscale, 1)], Asl)]);
    fed.publish(&galatina, vec![item("c1", 1, 500, &[(Stp, 9)], Comune)]);
    assert!(fed.who_else(&asl, "a1").is_empty());
    let (ca, cc) = (fed.cluster(&asl, "a1"), fed.cluster(&galatina, "c1"));
    assert_ne!(ca, cc);
    fed.publish(&lecce, vec![item("b1", 1, 0, &[(CodiceFiscale, 1), (Stp, 9)], Comune)]);
    assert_eq!(fed.who_else(&asl, "a1"), vec![("comune-y".to_string(), certain), ("comune-z".to_string(), probable)]);
    assert_eq!(fed.who_else(&galatina, "c1").len(), 2);
    // The merge keeps the oldest cluster id.
    assert_eq!(fed.cluster(&lecce, "b1"), ca);
    assert_eq!(fed.cluster(&galatina, "c1"), ca);

    // Withdrawing the bridge splits the cluster; the next question sees it.
    fed.c.withdraw(&lecce, &v1::WithdrawRequest { node_id: "comune-y".into(), references: vec!["b1".into()] }).unwrap();
    assert!(fed.who_else(&asl, "a1").is_empty());
    assert!(fed.who_else(&galatina, "c1").is_empty());
    assert_eq!(fed.cluster(&asl, "a1"), ca, "tie between the parts: the oldest item keeps the id");
    assert_ne!(fed.cluster(&galatina, "c1"), ca);

    // Back again: merged. Then c's identity is corrected (new revision, no shared code): c leaves.
    fed.publish(&lecce, vec![item("b2", 1, 0, &[(CodiceFiscale, 1), (Stp, 9)], Comune)]);
    assert_eq!(fed.who_else(&galatina, "c1").len(), 2);
    fed.publish(&galatina, vec![item("c1", 2, 500, &[(Stp, 7)], Comune)]);
    assert_eq!(fed.who_else(&asl, "a1"), vec![("comune-y".to_string(), certain)]);
    assert!(fed.who_else(&galatina, "c1").is_empty());
    let before = [fed.cluster(&asl, "a1"), fed.cluster(&lecce, "b2"), fed.cluster(&galatina, "c1")];
    assert_eq!(before[0], before[1]);
    assert_ne!(before[0], before[2]);

    // A relationship update changes nothing of the identity.
    let mut rel = item("a1", 1, 0, &[], Asl).relationship;
    rel.as_mut().unwrap().status = v1::RelationshipStatus::InValutazione as i32;
    fed.c.update_relationship(&asl, &v1::UpdateRelationshipRequest { node_id: "asl-x".into(), reference: "a1".into(), relationship: rel }).unwrap();

    // Restart: the same answers and the same cluster ids, and the encodings are indexed again.
    drop(fed);
    let mut fed = Fed { c: Coordinator::open(&config(dir.path()), &schema).unwrap(), batch: 100 };
    assert_eq!(fed.who_else(&asl, "a1"), vec![("comune-y".to_string(), certain)]);
    assert_eq!([fed.cluster(&asl, "a1"), fed.cluster(&lecce, "b2"), fed.cluster(&galatina, "c1")], before);
    assert_eq!(fed.c.stats(), (3, 2));
    fed.publish(&galatina, vec![item("d1", 1, 0, &[(CodiceFiscale, 1)], Comune)]);
    assert_eq!(fed.cluster(&galatina, "d1"), before[0], "a new record of the person joins the restored cluster");
    assert_eq!(fed.who_else(&galatina, "d1").len(), 2);
}

#[test]
fn metrics_count_questions_answers_refusals_and_links() {
    use ponte_coordinator::metrics;
    use v1::EntityType::{Asl, Comune};
    use v1::TokenKind::CodiceFiscale;
    let recorder = metrics::recorder();
    let handle = recorder.handle();
    let dir = tempfile::tempdir().unwrap();
    let schema = LinkageSchema::default_schema();
    let (asl, comune) = (node("asl-x", Asl), node("comune-y", Comune));
    let ask = |c: &Coordinator, who: &PeerIdentity, node_id: &str, reference: &str, role: v1::OperatorRole, purpose: v1::Purpose, operator: &str| {
        let q = v1::WhoElseQuestion {
            node_id: node_id.into(),
            anchor_reference: reference.into(),
            purpose: purpose as i32,
            operator_role: role as i32,
            operator_id: operator.into(),
            break_glass_reason: 0,
        };
        c.who_else(who, &q)
    };
    ::metrics::with_local_recorder(&recorder, || {
        metrics::describe();
        let mut fed = Fed { c: Coordinator::open(&config(dir.path()), &schema).unwrap(), batch: 0 };
        fed.publish(&asl, vec![item("a1", 1, 0, &[(CodiceFiscale, 1)], Asl)]);
        fed.publish(&comune, vec![item("b1", 1, 0, &[(CodiceFiscale, 1)], Comune), item("b2", 1, 700, &[], Comune)]);
        use v1::OperatorRole::{AssistenteSociale, OperatoreCot};
        use v1::Purpose::{ContinuitaAssistenziale, ConvocazioneUvm};
        // Two answers (one relationship shown in full each way), then one refusal per reason.
        assert_eq!(ask(&fed.c, &comune, "comune-y", "b1", AssistenteSociale, ContinuitaAssistenziale, "op-1").unwrap().relationships.len(), 1);
        assert_eq!(ask(&fed.c, &asl, "asl-x", "a1", AssistenteSociale, ContinuitaAssistenziale, "op-1").unwrap().relationships.len(), 1);
        for (who, node_id, reference, role, purpose, operator) in [
            (&comune, "comune-y", "zz9", AssistenteSociale, ContinuitaAssistenziale, "op-1"),
            (&comune, "comune-y", "b1", OperatoreCot, ConvocazioneUvm, "op-1"),
            (&comune, "comune-y", "b1", AssistenteSociale, ContinuitaAssistenziale, "OP 1"),
            (&comune, "asl-x", "a1", AssistenteSociale, ContinuitaAssistenziale, "op-1"),
        ] {
            assert!(ask(&fed.c, who, node_id, reference, role, purpose, operator).is_err());
        }
        fed.c.withdraw(&comune, &v1::WithdrawRequest { node_id: "comune-y".into(), references: vec!["b2".into()] }).unwrap();
        metrics::holdings(&fed.c.holdings());
    });
    let text = handle.render();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(value(r#"ponte_coordinator_questions_total{purpose="continuita_assistenziale",requester="comune"}"#), 4.0);
    assert_eq!(value(r#"ponte_coordinator_questions_total{purpose="convocazione_uvm",requester="comune"}"#), 1.0);
    assert_eq!(value(r#"ponte_coordinator_answers_total{purpose="continuita_assistenziale",requester="comune"}"#), 1.0);
    assert_eq!(value(r#"ponte_coordinator_answers_total{purpose="continuita_assistenziale",requester="asl"}"#), 1.0);
    for reason in ["anchor_not_held", "purpose_not_allowed", "invalid_request", "wrong_node"] {
        assert_eq!(value(&format!("ponte_coordinator_question_refusals_total{{reason=\"{reason}\"}}")), 1.0, "{reason}");
    }
    assert_eq!(value(r#"ponte_coordinator_question_refusals_total{reason="break_glass"}"#), 0.0);
    // Both relationships are segretariato_sociale (t1): shown in full to either sector.
    assert_eq!(value(r#"ponte_coordinator_relationships_disclosed_total{disclosure="full"}"#), 2.0);
    assert_eq!(value(r#"ponte_coordinator_links_found_total{band="certain"}"#), 1.0);
    assert_eq!(value(r#"ponte_coordinator_publish_batches_total{node="comune-y",outcome="stored"}"#), 1.0);
    assert_eq!(value(r#"ponte_coordinator_published_items_total{node="comune-y"}"#), 2.0);
    assert_eq!(value(r#"ponte_coordinator_withdrawn_items_total{node="comune-y"}"#), 1.0);
    assert_eq!(value("ponte_coordinator_items"), 2.0);
    assert_eq!(value("ponte_coordinator_persons"), 1.0);
    assert_eq!(value("ponte_coordinator_links"), 1.0);
    assert_eq!(value(r#"ponte_coordinator_question_duration_seconds_count{outcome="refused"}"#), 4.0);
    // Audit: the first policy, two answers, the two policy refusals (not the malformed nor the
    // impersonating question, refused before they were questions), the withdrawal.
    assert_eq!(value("ponte_coordinator_audit_entries"), 6.0);
    for secret in ["a1", "b1", "b2", "zz9", "op-1", "OP 1"] {
        assert!(!text.contains(&format!("\"{secret}\"")), "{secret} appears in the metrics:\n{text}");
    }
}
