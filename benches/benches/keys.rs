//! Key validation runs before every lookup touches data: the hub's parser beside a naive one.

use citybrain_benches::{naive_citizen_id_ok, naive_credit_code_ok};
use citybrain_types::{CitizenId, CreditCode, Date};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn ids() -> Vec<String> {
    (0..1024)
        .map(|i| {
            CitizenId::from_parts(
                440605,
                Date::from_days(-9000 + i * 17),
                (i % 999) as u16 + 1,
            )
            .as_str()
            .to_owned()
        })
        .collect()
}

fn citizen_id(c: &mut Criterion) {
    let ids = ids();
    let mut g = c.benchmark_group("citizen_id_validate_1024");
    g.bench_function("hub", |b| {
        b.iter(|| {
            ids.iter()
                .filter(|s| CitizenId::parse(black_box(s)).is_ok())
                .count()
        })
    });
    g.bench_function("naive_baseline", |b| {
        b.iter(|| {
            ids.iter()
                .filter(|s| naive_citizen_id_ok(black_box(s)))
                .count()
        })
    });
    g.finish();
}

fn credit_code(c: &mut Criterion) {
    let set = citybrain_types::CREDIT_CHARSET;
    let codes: Vec<String> = (0..1024u64)
        .map(|i| {
            let org: String = (0..9)
                .map(|k| set[((i * 7 + k * 13) % 31) as usize] as char)
                .collect();
            CreditCode::from_body(&format!("91440605{org}"))
                .unwrap()
                .as_str()
                .to_owned()
        })
        .collect();
    let mut g = c.benchmark_group("credit_code_validate_1024");
    g.bench_function("hub", |b| {
        b.iter(|| {
            codes
                .iter()
                .filter(|s| CreditCode::parse(black_box(s)).is_ok())
                .count()
        })
    });
    g.bench_function("naive_baseline", |b| {
        b.iter(|| {
            codes
                .iter()
                .filter(|s| naive_credit_code_ok(black_box(s)))
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, citizen_id, credit_code);
criterion_main!(benches);
