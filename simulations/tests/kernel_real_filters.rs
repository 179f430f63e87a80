//! Every Dice kernel variant this CPU has agrees bit for bit with the scalar one — and with the
//! plain definition — on real filters: the demo population's records, imported and encoded by the
//! node's own code under the default and the hardened linkage schemas.

use ponte_coordinator::kernel::{FilterMatrix, KernelKind, dice_above, dice_all_pairs, dice_pairs_sequential, intersections, intersections_at};
use ponte_node::encode::Encoder;
use ponte_node::secret::LinkageSecret;
use ponte_proto::bits::{dice_words, to_words};
use ponte_proto::schema::{HARDENED_EXAMPLE_SCHEMA_TOML, LinkageSchema};
use ponte_sim::synth;

fn real_filters(schema: &LinkageSchema) -> Vec<Vec<u64>> {
    let mut scenario = synth::scenario::demo_scenario(300);
    scenario.seed = 44;
    let generated = synth::generate(&scenario);
    let encoder = Encoder::new(&LinkageSecret::from_bytes(1, [9; 32]), schema);
    let mut out = Vec::new();
    for export in &generated.exports {
        let (rows, _) = ponte_node::import::read_export(export.csv.as_slice(), &export.file_name, &export.import).unwrap();
        out.extend(rows.iter().map(|r| to_words(&encoder.encode(&r.identity).clk)));
    }
    out
}

#[test]
fn kernel_variants_agree_on_real_filters() {
    let hardened = LinkageSchema::parse(HARDENED_EXAMPLE_SCHEMA_TOML).unwrap();
    for schema in [LinkageSchema::default_schema(), hardened] {
        let filters = real_filters(&schema);
        assert!(filters.len() > 300, "{} filters", filters.len());
        let mut m = FilterMatrix::new(filters[0].len()).unwrap();
        for f in &filters {
            m.push(f).unwrap();
        }
        let reference = dice_all_pairs(KernelKind::Scalar, &m, &m, 0.7, usize::MAX).unwrap();
        // The scalar kernel against the definition.
        for p in &reference {
            let d = dice_words(&filters[p.a as usize], &filters[p.b as usize]);
            assert!(d >= 0.7 && (d as f32 - p.dice).abs() < 1e-6);
        }
        let expected_count = filters.iter().flat_map(|a| filters.iter().map(move |b| (a, b))).filter(|(a, b)| dice_words(a, b) >= 0.7).count();
        assert_eq!(reference.len(), expected_count);
        assert!(reference.len() > filters.len(), "near-duplicates of one person are among the pairs");
        let rows: Vec<u32> = (0..m.len() as u32).rev().step_by(3).collect();
        for kind in KernelKind::available() {
            assert_eq!(dice_all_pairs(kind, &m, &m, 0.7, usize::MAX).unwrap(), reference, "{kind}: all pairs");
            let mut seq = Vec::new();
            dice_pairs_sequential(kind, &m, &m, 0.7, &mut seq).unwrap();
            seq.sort_by_key(|p| (p.a, p.b));
            assert_eq!(seq, reference, "{kind}: sequential");
            for q in filters.iter().step_by(37) {
                let (mut got, mut want) = (Vec::new(), Vec::new());
                dice_above(kind, q, &m, 0.7, &mut got).unwrap();
                dice_above(KernelKind::Scalar, q, &m, 0.7, &mut want).unwrap();
                assert_eq!(got, want, "{kind}: one query");
                let mut all = vec![0; m.len()];
                intersections(kind, q, &m, 0..m.len(), &mut all).unwrap();
                let mut at = vec![0; rows.len()];
                intersections_at(kind, q, &m, &rows, &mut at).unwrap();
                for (k, &r) in rows.iter().enumerate() {
                    let naive: u32 = q.iter().zip(&filters[r as usize]).map(|(a, b)| (a & b).count_ones()).sum();
                    assert_eq!((all[r as usize], at[k]), (naive, naive), "{kind}: counts");
                }
            }
        }
    }
}
