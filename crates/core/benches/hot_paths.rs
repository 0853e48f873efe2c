//! The webhook's and the sync's CPU-bound steps, measured: verifying and parsing a delivery with
//! 1,000 ref changes (the webhook must answer well within Bitbucket's timeout), and recognising
//! models of the sizes Hackolade users have (median 53 KB, up to tens of MB).
//!
//! `cargo bench -p hubsync-core`; under `cargo test --all-targets` each benchmark runs once.

use std::hint::black_box;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hubsync_core::ids::DeliveryId;
use hubsync_core::model::classify;
use hubsync_core::signature::{Signature, sign};
use hubsync_core::webhook::payload::parse_refs_changed;
use secrecy::SecretString;
use serde_json::json;

fn push_body(changes: usize) -> Vec<u8> {
    let changes: Vec<_> = (0..changes)
        .map(|i| {
            json!({"ref": {"id": format!("refs/heads/b{i}"), "displayId": format!("b{i}"), "type": "BRANCH"},
                   "refId": format!("refs/heads/b{i}"), "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
                   "toHash": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc", "type": "UPDATE"})
        })
        .collect();
    serde_json::to_vec(&json!({"eventKey": "repo:refs_changed", "actor": {"name": "jdoe"},
        "repository": {"slug": "models", "id": 1, "project": {"key": "DATA"}}, "changes": changes}))
    .unwrap()
}

fn model_of_size(bytes: usize) -> Vec<u8> {
    let entity = |i: usize| {
        json!({"GUID": format!("c{i}"), "collectionName": format!("entity_{i}"), "bucketId": "b1",
               "properties": (0..20).map(|p| json!({"name": format!("attr_{p}"), "type": "string", "required": p % 2 == 0,
                    "description": "An attribute with a description long enough to look like a real one."})).collect::<Vec<_>>()})
    };
    let one = serde_json::to_vec(&entity(0)).unwrap().len();
    let collections: Vec<_> = (0..bytes / one + 1).map(entity).collect();
    serde_json::to_vec_pretty(&json!({"modelName": "Bench", "appTarget": "MONGODB", "dbVendor": "MongoDB", "collections": collections,
        "relationships": [], "buckets": [{"GUID": "b1"}], "definitions": {}, "GUID": "g", "persistenceSchemaVersion": "8"}))
    .unwrap()
}

fn webhook(c: &mut Criterion) {
    let secret = SecretString::from("bench-secret".to_owned());
    let body = push_body(1000);
    let header = sign(&body, &secret);
    let mut group = c.benchmark_group("webhook_1000_changes");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("verify_signature", |b| {
        b.iter(|| {
            Signature::parse(black_box(&header))
                .unwrap()
                .verify(black_box(&body), [&secret])
                .unwrap()
        })
    });
    group.bench_function("parse_payload", |b| {
        b.iter(|| parse_refs_changed(black_box(&body), DeliveryId::parse("d").unwrap(), Utc::now()).unwrap())
    });
    group.finish();
}

fn recognise(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify_model");
    group.sample_size(10);
    for size in [53 * 1024, 2 * 1024 * 1024, 10 * 1024 * 1024] {
        let model = model_of_size(size);
        group.throughput(Throughput::Bytes(model.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &model, |b, m| {
            b.iter(|| classify("m.hck.json", black_box(m)))
        });
    }
    group.finish();
}

criterion_group!(benches, webhook, recognise);
criterion_main!(benches);
