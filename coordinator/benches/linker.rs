//! The linker's two paths on synthetic filters (persons as random filters, records as noisy
//! copies, most with a codice fiscale token): one record published online against 200k indexed,
//! and a bulk batch of 20k against 200k. `cargo bench -p ponte-coordinator --bench linker`.
//! Realistic populations and the figures of the issue targets: `ponte-sim bench online|bulk`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ponte_coordinator::linker::{Linker, LinkerParams, Publish};
use ponte_coordinator::model::{EpochEncoding, Token};
use ponte_coordinator::scoring::FsModel;
use ponte_proto::schema::LinkageSchema;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn records(seed: u64, n: usize) -> Vec<EpochEncoding> {
    let mut rng = Rng(seed);
    let persons = n / 2;
    (0..n)
        .map(|_| {
            let p = rng.next() % persons as u64;
            let mut person = Rng(p.wrapping_mul(7919) ^ seed);
            let mut clk = vec![0u8; 128];
            for b in 0..1024 {
                let set = person.next() % 100 < 40;
                if set != (rng.next() % 100 < 4) {
                    ponte_proto::bits::set_bit(&mut clk, b);
                }
            }
            let tokens = if rng.next() % 10 < 7 {
                vec![Token { kind: ponte_proto::v1::TokenKind::CodiceFiscale as i32, value: {
                    let mut v = [0u8; 32];
                    v[..8].copy_from_slice(&p.to_le_bytes());
                    v
                } }]
            } else {
                vec![]
            };
            EpochEncoding { epoch: 1, clk, tokens }
        })
        .collect()
}

fn linker_with(indexed: &[EpochEncoding]) -> Linker {
    let schema = LinkageSchema::default_schema();
    let mut l = Linker::new(LinkerParams::for_schema(&schema, FsModel::default_model())).expect("valid parameters");
    for (i, e) in indexed.iter().enumerate() {
        l.restore(i as u64, 1, std::slice::from_ref(e)).expect("valid encoding");
    }
    l.finish_restore(std::iter::empty());
    l
}

fn online(c: &mut Criterion) {
    let indexed = records(1, 200_000);
    let queries = records(2, 1_000);
    let mut l = linker_with(&indexed);
    let mut next = indexed.len() as u64;
    let mut i = 0;
    let mut g = c.benchmark_group("online_200k");
    g.throughput(Throughput::Elements(1));
    g.bench_function("publish_one", |b| {
        b.iter(|| {
            let q = &queries[i % queries.len()];
            i += 1;
            next += 1;
            black_box(l.publish(next, 1, q).expect("valid"))
        })
    });
    g.finish();
}

fn bulk(c: &mut Criterion) {
    let indexed = records(3, 200_000);
    let batch = records(4, 20_000);
    let mut g = c.benchmark_group("bulk_20k_into_200k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("publish_batch", |b| {
        b.iter_batched(
            || linker_with(&indexed),
            |mut l| {
                let items: Vec<Publish<'_>> =
                    batch.iter().enumerate().map(|(i, e)| Publish { id: (indexed.len() + i) as u64, revision: 1, encoding: e, node: 0 }).collect();
                black_box(l.publish_batch(&items).expect("valid"));
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, online, bulk);
criterion_main!(benches);
