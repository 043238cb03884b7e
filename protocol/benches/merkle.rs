//! Merkle log benchmarks: streaming append of 1M leaves (the auditor's replay path), and
//! inclusion and consistency proof generation and verification on a 1M-leaf tree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lienthong_protocol::rfc6962::{
    MemoryTree, TreeBuilder, consistency_proof, inclusion_proof, leaf_hash, verify_consistency,
    verify_inclusion,
};

const N: u64 = 1 << 20;

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_1M");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    let leaves: Vec<_> = (0..N).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    g.bench_function("tree_builder_leaf_hashes", |b| {
        b.iter(|| {
            let mut t = TreeBuilder::new();
            for l in &leaves {
                t.push_leaf_hash(*l);
            }
            black_box(t.root())
        });
    });
    // 200-byte entries, roughly a signed envelope header: leaf hashing included.
    let entry = [0x5au8; 200];
    g.bench_function("tree_builder_200B_entries", |b| {
        b.iter(|| {
            let mut t = TreeBuilder::new();
            for i in 0..N {
                let mut e = entry;
                e[..8].copy_from_slice(&i.to_be_bytes());
                t.push_entry(&e);
            }
            black_box(t.root())
        });
    });
    g.bench_function("memory_tree_leaf_hashes", |b| {
        b.iter(|| {
            let mut t = MemoryTree::new();
            for l in &leaves {
                t.push_leaf_hash(*l);
            }
            black_box(t.size())
        });
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let tree = MemoryTree::from_entries((0..N).map(|i| i.to_be_bytes()));
    let size = N - 12_345;
    let root = tree.root_at(size).unwrap();
    let old = 777_777;
    let old_root = tree.root_at(old).unwrap();
    let mut g = c.benchmark_group("proofs_1M");
    g.bench_function("inclusion_generate", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % size;
            black_box(inclusion_proof(&tree, i, size).unwrap())
        });
    });
    let leaf = tree.leaf(123_456).unwrap();
    let proof = inclusion_proof(&tree, 123_456, size).unwrap();
    g.bench_function("inclusion_verify", |b| {
        b.iter(|| verify_inclusion(123_456, size, &leaf, black_box(&proof), &root).unwrap());
    });
    g.bench_function("consistency_generate", |b| {
        b.iter(|| black_box(consistency_proof(&tree, old, size).unwrap()));
    });
    let cproof = consistency_proof(&tree, old, size).unwrap();
    g.bench_function("consistency_verify", |b| {
        b.iter(|| verify_consistency(old, size, &old_root, &root, black_box(&cproof)).unwrap());
    });
    g.bench_function("root_at_size", |b| {
        b.iter_batched(|| size, |s| tree.root_at(s).unwrap(), BatchSize::SmallInput);
    });
    g.finish();
}

criterion_group!(benches, append, proofs);
criterion_main!(benches);
