//! The Dice kernel per variant: one query against 100k filters, and tiled all-pairs 2k × 2k.
//! Throughput is in comparisons (filter pairs). `cargo bench -p ponte-coordinator --bench kernel`.
//! All-pairs runs on one thread here so its figure is per core; `ponte-sim bench kernel` also
//! measures all cores.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ponte_coordinator::kernel::{FilterMatrix, KernelKind, dice_above, dice_all_pairs, intersections};

const WORDS: usize = 16;

/// Seeded random filters with about 45% of the bits set (SplitMix64, bit-wise Bernoulli).
fn filters(seed: u64, rows: usize) -> FilterMatrix {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut m = FilterMatrix::with_capacity(WORDS, rows).expect("valid length");
    let mut f = [0u64; WORDS];
    for _ in 0..rows {
        for w in &mut f {
            *w = (0..64).fold(0, |acc, bit| acc | (u64::from(next() % 100 < 45) << bit));
        }
        m.push(&f).expect("same length");
    }
    m
}

fn one_query(c: &mut Criterion) {
    let m = filters(1, 100_000);
    let query = filters(2, 1);
    let mut g = c.benchmark_group("one_query_100k");
    g.throughput(Throughput::Elements(m.len() as u64));
    for kind in KernelKind::available() {
        let mut counts = vec![0u32; m.len()];
        g.bench_function(format!("intersections/{kind}"), |b| {
            b.iter(|| intersections(kind, black_box(query.row(0)), &m, 0..m.len(), &mut counts).expect("valid input"))
        });
        let mut found = Vec::new();
        g.bench_function(format!("dice_above/{kind}"), |b| {
            b.iter(|| {
                found.clear();
                dice_above(kind, black_box(query.row(0)), &m, 0.8, &mut found).expect("valid input")
            })
        });
    }
    g.finish();
}

fn all_pairs(c: &mut Criterion) {
    let a = filters(3, 2_000);
    let b = filters(4, 2_000);
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("thread pool");
    let mut g = c.benchmark_group("all_pairs_2k_x_2k_one_core");
    g.throughput(Throughput::Elements((a.len() * b.len()) as u64));
    g.sample_size(20);
    for kind in KernelKind::available() {
        g.bench_function(kind.name(), |bench| {
            bench.iter(|| one.install(|| dice_all_pairs(kind, black_box(&a), &b, 0.8, 1_000_000).expect("valid input")))
        });
    }
    g.finish();
}

criterion_group!(benches, one_query, all_pairs);
criterion_main!(benches);
