use super::*;
use crate::blocking::LSH_SEED;
use crate::model::Token;
use ponte_proto::v1::TokenKind;

/// Small keys so that blocking finds every pair these tests build; a fixed prior.
fn params() -> LinkerParams {
    LinkerParams {
        model: FsModel::default_model(),
        lsh: LshParams { bits_per_key: 4, tables: 24, skip_most_frequent: 0, seed: LSH_SEED },
        clk_bits: 1024,
        kernel: KernelKind::detect(),
        prior_records: Some(1000),
    }
}

fn linker() -> Linker {
    Linker::new(params()).unwrap()
}

/// A CLK with bits `start .. start + 400` set: two such filters at starts `s₁`, `s₂` have Dice
/// `1 − |s₁ − s₂| / 400`.
fn enc(epoch: u32, start: usize, cf: Option<u8>) -> EpochEncoding {
    let mut clk = vec![0u8; 128];
    for b in start..start + 400 {
        ponte_proto::bits::set_bit(&mut clk, b % 1024);
    }
    EpochEncoding {
        epoch,
        clk,
        tokens: cf.map(|c| vec![Token { kind: TokenKind::CodiceFiscale as i32, value: [c; 32] }]).unwrap_or_default(),
    }
}

fn publish(l: &mut Linker, id: ItemId, rev: u64, e: &EpochEncoding) -> LinkChange {
    let ch = l.publish(id, rev, e).unwrap();
    l.clusters_consistent().unwrap();
    ch
}

fn ids(v: Vec<(ItemId, Band)>) -> Vec<ItemId> {
    v.into_iter().map(|x| x.0).collect()
}

#[test]
fn the_shipped_model_bands_pairs_as_a_reader_expects() {
    let mut l = linker();
    publish(&mut l, 1, 1, &enc(1, 0, Some(7)));
    // Same identity and codice fiscale: certain.
    assert_eq!(publish(&mut l, 2, 1, &enc(1, 0, Some(7))), LinkChange::Relinked { removed: vec![], links: vec![(1, Band::Certain)] });
    // Dice 0.93, no token: probable.
    assert_eq!(l.publish(3, 1, &enc(1, 28, None)).unwrap(), LinkChange::Relinked { removed: vec![], links: vec![(1, Band::Probable), (2, Band::Probable)] });
    // Dice 0.805 to 1 and 2, 0.875 to 3: possible, possible, probable.
    let mut l = linker();
    publish(&mut l, 1, 1, &enc(1, 0, None));
    assert_eq!(l.publish(2, 1, &enc(1, 78, None)).unwrap(), LinkChange::Relinked { removed: vec![], links: vec![(1, Band::Possible)] });
    // Unrelated: nothing.
    assert_eq!(l.publish(3, 1, &enc(1, 500, None)).unwrap(), LinkChange::Relinked { removed: vec![], links: vec![] });
    // An agreeing codice fiscale links even weak filters; a disagreeing one holds filters at
    // Dice 0.91 (probable on their own) back to possible.
    let mut l = linker();
    publish(&mut l, 1, 1, &enc(1, 0, Some(1)));
    assert_eq!(ids(l.related(1)), Vec::<ItemId>::new());
    let ch = l.publish(2, 1, &enc(1, 120, Some(1))).unwrap();
    assert!(matches!(&ch, LinkChange::Relinked { links, .. } if links.len() == 1 && links[0].1.is_strong()), "{ch:?}");
    let ch = l.publish(3, 1, &enc(1, 36, None)).unwrap();
    assert!(matches!(&ch, LinkChange::Relinked { links, .. } if links.iter().any(|x| x == &(1, Band::Probable))), "{ch:?}");
    l.remove(3);
    let ch = l.publish(3, 1, &enc(1, 36, Some(2))).unwrap();
    assert!(matches!(&ch, LinkChange::Relinked { links, .. } if links.iter().all(|x| x.1 == Band::Possible) && !links.is_empty()), "{ch:?}");
}

#[test]
fn transitive_clusters_split_when_the_bridge_is_withdrawn_and_ids_stay_stable() {
    let mut l = linker();
    // a and c are not alike (Dice 0.775); b bridges them with probable links.
    publish(&mut l, 1, 1, &enc(1, 0, None));
    publish(&mut l, 2, 1, &enc(1, 28, None));
    publish(&mut l, 3, 1, &enc(1, 90, None));
    assert_eq!(ids(l.related(1)), vec![2, 3]);
    assert_eq!(l.cluster_count(), 1);
    let person = l.cluster_of(1).unwrap();
    assert!([2, 3].iter().all(|&i| l.cluster_of(i) == Some(person)));
    l.take_cluster_changes();
    // A fourth record of a's person (identical filter: certain), then the bridge goes: {a, d}
    // keep the id (most members), c gets a fresh one.
    publish(&mut l, 4, 1, &enc(1, 0, None));
    assert_eq!(l.cluster_of(4), Some(person));
    assert_eq!(l.remove(2), vec![1, 3, 4]);
    l.clusters_consistent().unwrap();
    assert_eq!(l.related(1), vec![(4, Band::Certain)]);
    assert!(l.related(3).is_empty());
    assert_eq!(l.cluster_of(1), Some(person));
    assert_eq!(l.cluster_of(4), Some(person));
    let other = l.cluster_of(3).unwrap();
    assert_ne!(other, person);
    assert_eq!(l.cluster_count(), 2);
    assert_eq!(l.cluster_of(2), None);
    let changes = l.take_cluster_changes();
    assert!(changes.contains(&(2, 0)) && changes.contains(&(3, other)), "{changes:?}");
}

#[test]
fn a_new_item_merges_clusters_under_the_oldest_id_and_an_update_splits_them_again() {
    let mut l = linker();
    publish(&mut l, 1, 1, &enc(1, 0, None));
    publish(&mut l, 2, 1, &enc(1, 90, None));
    let (c1, c2) = (l.cluster_of(1).unwrap(), l.cluster_of(2).unwrap());
    assert!(c1 < c2);
    publish(&mut l, 3, 1, &enc(1, 45, None)); // Dice 0.8875 to both: probable
    assert_eq!(l.cluster_of(2), Some(c1));
    assert_eq!(l.cluster_of(3), Some(c1));
    assert_eq!(ids(l.related(2)), vec![1, 3]);
    // The bridge's identity is corrected (new revision) to someone else: the cluster splits.
    let ch = publish(&mut l, 3, 2, &enc(1, 600, None));
    assert_eq!(ch, LinkChange::Relinked { removed: vec![1, 2], links: vec![] });
    assert!(l.related(1).is_empty() && l.related(2).is_empty());
    assert_eq!(l.cluster_count(), 3);
    // Tie between the parts {1} and {2} (one member each): the part with the oldest item keeps it.
    assert_eq!(l.cluster_of(1), Some(c1));
    assert_ne!(l.cluster_of(2), Some(c1));
    assert_ne!(l.cluster_of(3), Some(c1));
    // Corrected back: merged again, under the oldest id.
    publish(&mut l, 3, 3, &enc(1, 45, None));
    assert_eq!(l.cluster_count(), 1);
    assert_eq!(l.cluster_of(2), Some(c1));
}

#[test]
fn possible_links_never_merge_and_duplicates_inside_an_entity_link() {
    let mut l = linker();
    publish(&mut l, 1, 1, &enc(1, 0, None));
    publish(&mut l, 2, 1, &enc(1, 78, None));
    assert_eq!(l.related(1), vec![(2, Band::Possible)]);
    assert_eq!(l.cluster_count(), 2);
    assert_ne!(l.cluster_of(1), l.cluster_of(2));
    // The linker knows nothing of entities: two records of one entity link like any pair.
    publish(&mut l, 3, 1, &enc(1, 0, None));
    assert_eq!(l.related(3), vec![(1, Band::Certain), (2, Band::Possible)]);
}

#[test]
fn a_new_revision_relinks_and_the_same_revision_does_not() {
    let mut l = linker();
    publish(&mut l, 1, 1, &enc(1, 0, Some(7)));
    let ch = publish(&mut l, 2, 1, &enc(1, 4, Some(7)));
    assert_eq!(ch, LinkChange::Relinked { removed: vec![], links: vec![(1, Band::Certain)] });
    // Same revision again (a retry): nothing changes.
    assert_eq!(publish(&mut l, 2, 1, &enc(1, 4, Some(7))), LinkChange::Unchanged);
    // A new revision with another identity: the link goes.
    let ch = publish(&mut l, 2, 2, &enc(1, 500, Some(9)));
    assert_eq!(ch, LinkChange::Relinked { removed: vec![1], links: vec![] });
    assert!(l.related(1).is_empty());
}

#[test]
fn links_survive_a_key_rotation() {
    let mut l = linker();
    publish(&mut l, 1, 1, &enc(1, 0, Some(7)));
    publish(&mut l, 2, 1, &enc(1, 4, Some(7)));
    // Epoch 2: completely different bits, same revisions → links kept, no relinking.
    assert_eq!(publish(&mut l, 1, 1, &enc(2, 500, Some(8))), LinkChange::Unchanged);
    assert_eq!(publish(&mut l, 2, 1, &enc(2, 600, Some(9))), LinkChange::Unchanged);
    l.drop_epoch(1);
    assert_eq!(l.related(1), vec![(2, Band::Certain)]);
    assert_eq!(l.epoch_counts(), vec![(2, 2)]);
    // A newcomer under epoch 2 is compared with epoch-2 encodings only.
    let ch = publish(&mut l, 3, 1, &enc(2, 500, Some(8)));
    assert_eq!(ch, LinkChange::Relinked { removed: vec![], links: vec![(1, Band::Certain)] });
}

#[test]
fn refused_batches_change_nothing() {
    let mut l = linker();
    publish(&mut l, 1, 1, &enc(1, 0, None));
    let mut short = enc(1, 0, None);
    short.clk.truncate(64);
    let good = enc(1, 0, None);
    let batch = [Publish { id: 2, revision: 1, encoding: &good, node: 0 }, Publish { id: 3, revision: 1, encoding: &short, node: 0 }];
    assert_eq!(l.publish_batch(&batch).unwrap_err(), LinkError::ClkLength { expected: 128, got: 64 });
    assert_eq!(l.len(), 1);
    assert!(matches!(l.publish(MAX_ITEM_ID + 1, 1, &good), Err(LinkError::ItemId(_))));
    assert_eq!(l.len(), 1);
    assert!(l.related(1).is_empty());
}

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Persons as random filters; records as noisy copies, some with a codice fiscale.
fn population(seed: u64, persons: usize, records: usize) -> Vec<EpochEncoding> {
    let mut rng = Rng(seed);
    let people: Vec<Vec<usize>> = (0..persons).map(|_| (0..1024).filter(|_| rng.below(100) < 38).collect()).collect();
    (0..records)
        .map(|_| {
            let p = rng.below(persons as u64) as usize;
            let mut clk = vec![0u8; 128];
            for &b in &people[p] {
                if rng.below(100) >= 6 {
                    ponte_proto::bits::set_bit(&mut clk, b);
                }
            }
            for _ in 0..rng.below(30) {
                ponte_proto::bits::set_bit(&mut clk, rng.below(1024) as usize);
            }
            let cf = match rng.below(10) {
                0..=5 => vec![Token { kind: TokenKind::CodiceFiscale as i32, value: [p as u8; 32] }],
                6 => vec![Token { kind: TokenKind::CodiceFiscale as i32, value: [rng.below(250) as u8; 32] }],
                _ => vec![],
            };
            EpochEncoding { epoch: 1, clk, tokens: cf }
        })
        .collect()
}

#[test]
fn the_bulk_and_online_paths_find_the_same_links_and_clusters() {
    let p = LinkerParams { lsh: LshParams { bits_per_key: 16, tables: 30, skip_most_frequent: 0, seed: LSH_SEED }, ..params() };
    let encs = population(5, 120, 600);
    // Half indexed one by one, then the rest as one bulk batch (bucket path) …
    let mut bulk = Linker::new(p.clone()).unwrap();
    for (i, e) in encs[..300].iter().enumerate() {
        bulk.publish(i as ItemId, 1, e).unwrap();
    }
    let batch: Vec<Publish<'_>> = encs[300..].iter().enumerate().map(|(i, e)| Publish { id: 300 + i as ItemId, revision: 1, encoding: e, node: 0 }).collect();
    assert!(batch.len() >= BULK_PATH_MIN_ITEMS);
    bulk.publish_batch(&batch).unwrap();
    // … against everything one by one (query path), and in batches of 20.
    let mut online = Linker::new(p.clone()).unwrap();
    for (i, e) in encs.iter().enumerate() {
        online.publish(i as ItemId, 1, e).unwrap();
    }
    let mut small = Linker::new(p).unwrap();
    for (c, chunk) in encs.chunks(20).enumerate() {
        let batch: Vec<Publish<'_>> = chunk.iter().enumerate().map(|(i, e)| Publish { id: (c * 20 + i) as ItemId, revision: 1, encoding: e, node: 0 }).collect();
        small.publish_batch(&batch).unwrap();
    }
    let links = online.links();
    assert!(links.len() > 500, "{} links: the population should have many", links.len());
    assert!(links.iter().any(|l| l.2 == Band::Possible) && links.iter().any(|l| l.2 == Band::Certain));
    assert_eq!(bulk.links(), links);
    assert_eq!(small.links(), links);
    for l in [&bulk, &online, &small] {
        l.clusters_consistent().unwrap();
    }
    assert_eq!(bulk.cluster_count(), online.cluster_count());
}

#[test]
fn clusters_stay_consistent_through_random_publishing_updates_and_withdrawals() {
    let encs = population(9, 40, 400);
    let mut l = linker();
    let mut rng = Rng(99);
    let mut revision = vec![0u64; 60];
    for step in 0..600 {
        let id = rng.below(60);
        match rng.below(6) {
            0 => {
                l.remove(id);
                revision[id as usize] = 0;
            }
            _ => {
                revision[id as usize] += 1;
                let e = &encs[rng.below(encs.len() as u64) as usize];
                l.publish(id, revision[id as usize], e).unwrap();
            }
        }
        l.clusters_consistent().unwrap_or_else(|e| panic!("step {step}: {e}"));
        // related() follows the clusters: the strong part of an answer is exactly the cluster.
        if l.contains(id) {
            let c = l.cluster_of(id).unwrap();
            for (other, band) in l.related(id) {
                assert_eq!(band.is_strong(), l.cluster_of(other) == Some(c), "step {step}");
            }
        }
    }
    // Restoring the final state gives the same clusters (ids kept, no repairs).
    let mut restored = linker();
    for id in 0..60 {
        if l.contains(id) {
            let e = &encs[0];
            restored.restore(id, revision[id as usize], std::slice::from_ref(e)).unwrap();
        }
    }
    for (a, b, band) in l.links() {
        restored.restore_link(a, b, band);
    }
    let saved: Vec<(ItemId, ClusterId)> = (0..60).filter_map(|i| l.cluster_of(i).map(|c| (i, c))).collect();
    restored.finish_restore(saved.clone());
    assert!(restored.take_cluster_changes().is_empty());
    assert_eq!((0..60).filter_map(|i| restored.cluster_of(i).map(|c| (i, c))).collect::<Vec<_>>(), saved);
}

#[test]
fn the_prior_size_moves_in_steps_not_with_each_item() {
    assert_eq!(prior_size(0), 32);
    assert_eq!(prior_size(1000), 1024);
    assert_eq!(prior_size(1001), 1024);
    assert_eq!(prior_size(1025), 1088);
    for n in [33u64, 5_000, 123_457, 10_000_000] {
        let p = prior_size(n);
        assert!(p >= n && (p as f64) <= n as f64 * 1.0625, "{n} -> {p}");
        assert_eq!(prior_size(p), p, "a step is its own size");
    }
}

#[test]
fn blocking_positions_are_chosen_once_and_kept_through_more_items_and_a_restart() {
    let p = LinkerParams { lsh: LshParams { bits_per_key: 12, tables: 8, skip_most_frequent: 64, seed: LSH_SEED }, ..params() };
    let encs = population(3, 3000, ADAPT_LSH_AT + 1500);
    let mut l = Linker::new(p.clone()).unwrap();
    let batch = |from: usize, to: usize| -> Vec<Publish<'_>> { (from..to).map(|i| Publish { id: i as ItemId, revision: 1, encoding: &encs[i], node: 0 }).collect() };
    let unadapted = l.index.lsh_positions(1);
    l.publish_batch(&batch(0, 1000)).unwrap();
    assert!(l.index.lsh_positions(1) == unadapted || unadapted.is_empty(), "below the threshold: not adapted");
    l.publish_batch(&batch(1000, ADAPT_LSH_AT)).unwrap();
    let chosen = l.index.lsh_positions(1);
    let frozen = l.index.frozen_frequencies();
    assert_eq!(frozen.len(), 1, "chosen once, reported for storage");
    l.publish_batch(&batch(ADAPT_LSH_AT, ADAPT_LSH_AT + 1500)).unwrap();
    assert_eq!(l.index.lsh_positions(1), chosen, "more items never move the positions");
    assert!(l.index.frozen_frequencies().is_empty());
    // A restart with the stored frequencies chooses the same positions.
    let mut restored = Linker::new(p).unwrap();
    for (i, e) in encs.iter().enumerate() {
        restored.restore(i as ItemId, 1, std::slice::from_ref(e)).unwrap();
    }
    restored.index.restore_frequencies(1, frozen[0].1.clone());
    restored.finish_restore(std::iter::empty());
    assert_eq!(restored.index.lsh_positions(1), chosen);
}
