//! Every call verifies its bearer token: the hub's checks beside a bare signature decode with
//! the same key, to show what the hub's extra checks cost.

use citybrain_auth::{AUDIENCE, Authenticator, LocalIssuer};
use citybrain_types::Role;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = LocalIssuer::load_or_create(dir.path()).unwrap();
    let auth = Authenticator::new([issuer.trusted_key()]);
    let token = issuer
        .mint("civil-affairs", Role::Consumer, "bench", 3600)
        .unwrap();
    let pem = std::fs::read(dir.path().join("hub-signing-key.pub.pem")).unwrap();
    let key = jsonwebtoken::DecodingKey::from_ed_pem(&pem).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&[AUDIENCE]);

    let mut g = c.benchmark_group("token_verify");
    g.bench_function("hub", |b| {
        b.iter(|| auth.verify(black_box(&token)).unwrap())
    });
    g.bench_function("bare_decode_baseline", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &key, &validation).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
