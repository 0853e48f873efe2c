//! The webhook's and the sync's CPU-bound steps, measured: the whole webhook handler in-process
//! (verify + parse + the queue message built) against HMAC-SHA256 alone over the same body, for
//! a 1-change and a 1,000-change delivery (issue 11, goal 3: at most 2x the HMAC floor; the
//! webhook must answer well within Bitbucket's timeout), and recognising models of the sizes
//! Hackolade users have (median 53 KB, up to tens of MB).
//!
//! `cargo bench -p hubsync-core`; under `cargo test --all-targets` each benchmark runs once.
//! `cargo xtask bench` reads the groups `webhook_1_change` and `webhook_1000_changes`
//! (functions `hmac_sha256` and `handler`, and the explanatory `parse` and `serde_json_scan`)
//! from `target/criterion`.

use std::hint::black_box;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use hubsync_core::ids::DeliveryId;
use hubsync_core::model::classify;
use hubsync_core::ports::{Enqueued, PushQueue, QueueError};
use hubsync_core::push::PushMessage;
use hubsync_core::secrets::{HubSecret, StaticSecret};
use hubsync_core::signature::{Signature, sign};
use hubsync_core::webhook::payload::parse_refs_changed;
use hubsync_core::webhook::{WebhookHandler, WebhookRequest};
use secrecy::SecretString;
use serde_json::json;

/// A queue that builds the message body as the SQS adapter does (the push as JSON) and drops it.
struct BuildOnlyQueue;

impl PushQueue for BuildOnlyQueue {
    async fn enqueue(&self, push: &PushMessage) -> Result<Enqueued, QueueError> {
        black_box(push.to_json());
        Ok(Enqueued::Queued)
    }
}

fn push_body(changes: usize) -> Vec<u8> {
    let changes: Vec<_> = (0..changes)
        .map(|i| {
            json!({"ref": {"id": format!("refs/heads/b{i}"), "displayId": format!("b{i}"), "type": "BRANCH"},
                   "refId": format!("refs/heads/b{i}"), "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
                   "toHash": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc", "type": "UPDATE"})
        })
        .collect();
    // As Bitbucket Data Center 8.x sends it, `commits` and `toCommit` included.
    serde_json::to_vec(&json!({"eventKey": "repo:refs_changed", "date": "2026-11-28T10:15:30+0000",
        "actor": {"name": "jdoe", "emailAddress": "jdoe@example.com", "id": 101, "displayName": "Jane Doe",
                  "active": true, "slug": "jdoe", "type": "NORMAL"},
        "repository": {"slug": "models", "id": 1, "name": "models", "hierarchyId": "e3c939f9ef4a7fae272e",
                       "scmId": "git", "state": "AVAILABLE", "statusMessage": "Available", "forkable": true,
                       "project": {"key": "DATA", "id": 1, "name": "Data", "public": false, "type": "NORMAL"}, "public": false},
        "changes": changes,
        "commits": [{"id": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc", "displayId": "178864a7d52",
                     "author": {"name": "jdoe", "emailAddress": "jdoe@example.com"}, "authorTimestamp": 1_764_324_930_000_u64,
                     "message": "Update the customer model", "parents": [{"id": "ecddabb624f6f5ba43816f5926e580a5f680a932"}]}],
        "toCommit": {"id": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc", "displayId": "178864a7d52"}}))
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

/// The handler end to end against HMAC-SHA256 alone, over the same signed body.
fn handler(c: &mut Criterion) {
    let secret = SecretString::from("bench-secret".to_owned());
    let hub = HubSecret::from_json(
        &json!({"baseUrl": "http://127.0.0.1:1", "accessToken": "t", "webhookSecret": "bench-secret"}).to_string(),
    )
    .unwrap();
    let handler = WebhookHandler::new(BuildOnlyQueue, StaticSecret::new(hub)).with_max_age(std::time::Duration::ZERO);
    for (group_name, changes) in [("webhook_1_change", 1), ("webhook_1000_changes", 1000)] {
        let body = push_body(changes);
        let signature = sign(&body, &secret);
        let mut headers = HeaderMap::new();
        headers.insert("x-event-key", HeaderValue::from_static("repo:refs_changed"));
        headers.insert("x-request-id", HeaderValue::from_static("8d2f6f3c-bench"));
        headers.insert("x-hub-signature", HeaderValue::from_str(&signature).unwrap());
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("hmac_sha256", |b| {
            b.iter(|| {
                Signature::parse(black_box(&signature))
                    .unwrap()
                    .verify(black_box(&body), [&secret])
                    .unwrap()
            })
        });
        // The handler's parse alone (its scanner, `webhook::scan`), and, to show why it has its
        // own, the least any serde_json parse of this body costs: validate and skip every value.
        group.bench_function("parse", |b| {
            b.iter(|| parse_refs_changed(black_box(&body), DeliveryId::parse("d").unwrap(), Utc::now()).unwrap())
        });
        group.bench_function("serde_json_scan", |b| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap())
        });
        group.bench_function("handler", |b| {
            b.iter(|| {
                let request = WebhookRequest {
                    method: &Method::POST,
                    path: "/gateway/public/sync",
                    headers: black_box(&headers),
                    body: black_box(&body),
                };
                let response = futures::executor::block_on(handler.handle(request));
                assert_eq!(response.status, http::StatusCode::ACCEPTED);
                response
            })
        });
        group.finish();
    }
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

criterion_group!(benches, handler, recognise);
criterion_main!(benches);
