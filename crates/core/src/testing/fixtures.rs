//! The values tests build again and again, written once: a minimal Hackolade model, the
//! `repo:refs_changed` body Bitbucket posts, a queued push, a hub secret, commit ids and a fixed
//! clock reading. Every builder is deterministic, so two calls with the same arguments give the
//! same bytes. They panic on impossible input (a malformed repository name in a test), which is
//! what a test wants.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use crate::ids::{CommitId, DeliveryId, RepoRef};
use crate::push::{Actor, MessageKind, Provider, PushMessage, RefChange, RefChangeType};
use crate::secrets::HubSecret;

/// The default branch of every fixture repository.
pub const MAIN: &str = "refs/heads/main";

/// A loopback address nothing listens on, for secrets whose Bitbucket is never called.
pub const UNUSED_BASE_URL: &str = "http://127.0.0.1:9";

/// A fixed instant (2026-11-24 10:00:00 UTC), for records whose time a test compares.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
        .single()
        .unwrap_or_else(|| unreachable!("a valid date"))
}

/// `DATA/models`-style names as a [`RepoRef`].
pub fn repo(name: &str) -> RepoRef {
    RepoRef::parse(name).unwrap_or_else(|e| panic!("fixture repository {name:?}: {e}"))
}

/// Commit `n`: `n` in 40 hex digits. `commit(0)` is the all-zero id Bitbucket uses for "none".
pub fn commit(n: u64) -> CommitId {
    CommitId::parse(&format!("{n:040x}")).unwrap_or_else(|_| unreachable!("40 hex digits"))
}

/// A delivery id.
pub fn delivery(id: &str) -> DeliveryId {
    DeliveryId::parse(id).unwrap_or_else(|e| panic!("fixture delivery id {id:?}: {e}"))
}

/// The smallest file model recognition accepts as a valid Hackolade model, named `name`, with one
/// entity.
pub fn model(name: &str) -> Vec<u8> {
    model_with_entities(name, 1)
}

/// A minimal valid model named `name` with `entities` entities (`collections`).
pub fn model_with_entities(name: &str, entities: usize) -> Vec<u8> {
    let collections: Vec<_> = (0..entities).map(|i| json!({"GUID": format!("{name}-{i}")})).collect();
    model_json(name, collections)
}

/// A valid model of at least `bytes` bytes whose content does not compress: one entity carries a
/// comment of pseudo-random letters and digits drawn from `seed`. Gzip keeps about three quarters
/// of it, so a megabyte stays far above any inline limit of a store.
pub fn incompressible_model(name: &str, seed: u64, bytes: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // xorshift64*: deterministic and fast; quality is irrelevant beyond defeating compression.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let noise: String = (0..bytes)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            char::from(ALPHABET[(r >> 58) as usize])
        })
        .collect();
    model_json(name, vec![json!({"GUID": format!("{name}-0"), "comments": noise})])
}

fn model_json(name: &str, collections: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "modelName": name, "appTarget": "MONGODB", "dbVendor": "MongoDB", "collections": collections,
        "relationships": [], "buckets": [], "definitions": {}, "GUID": format!("g-{name}"),
        "persistenceSchemaVersion": "8"
    }))
    .unwrap_or_else(|_| unreachable!("a JSON value serializes"))
}

/// A commit's files for [`MemoryGitHost::commit`](super::memory::MemoryGitHost::commit).
pub fn files(entries: &[(&str, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    entries.iter().map(|(p, b)| ((*p).to_owned(), b.clone())).collect()
}

/// The `repo:refs_changed` body Bitbucket Data Center posts when the default branch of `repo`
/// moves to `to` (from the all-zero id: the sync diffs from its own cursor anyway).
pub fn refs_changed(repo: &RepoRef, to: &CommitId) -> Vec<u8> {
    refs_changed_with(repo, &[update(MAIN, to)])
}

/// The `repo:refs_changed` body for `changes` of `repo` (repository id 1, pushed by `jdoe`).
/// It has no `date`, so the stale-delivery check does not apply whatever the clock says; the
/// tests of that check date their bodies themselves.
pub fn refs_changed_with(repo: &RepoRef, changes: &[RefChange]) -> Vec<u8> {
    let changes: Vec<_> = changes
        .iter()
        .map(|c| {
            let (kind, display) = match c.ref_id.strip_prefix("refs/heads/") {
                Some(branch) => ("BRANCH", branch),
                None => ("TAG", c.ref_id.strip_prefix("refs/tags/").unwrap_or(&c.ref_id)),
            };
            json!({
                "ref": {"id": c.ref_id, "displayId": display, "type": kind},
                "refId": c.ref_id,
                "fromHash": c.from_hash.as_str(),
                "toHash": c.to_hash.as_str(),
                "type": c.change_type,
            })
        })
        .collect();
    json!({
        "eventKey": "repo:refs_changed",
        "actor": {"name": "jdoe", "displayName": "Jane Doe", "emailAddress": "jdoe@example.com"},
        "repository": {"slug": repo.slug(), "id": 1, "project": {"key": repo.project()}},
        "changes": changes,
    })
    .to_string()
    .into_bytes()
}

/// `ref_id` moved from the all-zero id to `to`.
pub fn update(ref_id: &str, to: &CommitId) -> RefChange {
    RefChange {
        ref_id: ref_id.into(),
        change_type: RefChangeType::Update,
        from_hash: commit(0),
        to_hash: to.clone(),
    }
}

/// The queued push of `repo`'s default branch moving to `to`, delivery id `d-{to}`.
pub fn push(repo: &RepoRef, to: &CommitId) -> PushMessage {
    push_to(repo, MAIN, to)
}

/// The queued push of `ref_id` of `repo` moving to `to`, delivery id `d-{to}`, received at
/// [`t0`].
pub fn push_to(repo: &RepoRef, ref_id: &str, to: &CommitId) -> PushMessage {
    PushMessage {
        kind: MessageKind::Push,
        provider: Provider::BitbucketDataCenter,
        delivery_id: delivery(&format!("d-{to}")),
        repo: repo.clone(),
        repository_id: Some(1),
        changes: vec![update(ref_id, to)],
        actor: Actor {
            name: Some("jdoe".into()),
            display_name: Some("Jane Doe".into()),
            email_address: None,
        },
        received_at: t0(),
        from_commit: None,
    }
}

/// The JSON of a hub secret whose webhook secret is `webhook_secret`, also accepting
/// `previous`, with Bitbucket at [`UNUSED_BASE_URL`].
pub fn hub_secret_json(webhook_secret: &str, previous: &[&str]) -> String {
    json!({"baseUrl": UNUSED_BASE_URL, "accessToken": "fixture-token", "webhookSecret": webhook_secret,
           "previousWebhookSecrets": previous})
    .to_string()
}

/// A hub secret whose webhook secret is `webhook_secret` (see [`hub_secret_json`]).
pub fn hub_secret(webhook_secret: &str) -> HubSecret {
    HubSecret::from_json(&hub_secret_json(webhook_secret, &[]))
        .unwrap_or_else(|e| panic!("the fixture secret is valid: {e}"))
}
