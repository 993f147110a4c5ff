//! Criterion bench for this stage (filled in with the stage).
use criterion::{criterion_group, criterion_main, Criterion};

fn stage(_c: &mut Criterion) {}

criterion_group!(benches, stage);
criterion_main!(benches);
