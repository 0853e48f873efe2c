//! Writes the sample events in `events/`: raw Bitbucket Data Center bodies with the headers it
//! sends, and the same deliveries wrapped as API Gateway REST and HTTP API events, all signed with
//! the sample secret. The `events` test suite checks every signature, so the samples cannot rot.

use std::path::Path;

use anyhow::Context;
use hubsync_tests::lambda::{Gateway, apigw_event};
use secrecy::SecretString;
use serde_json::{Value, json};

/// The secret the samples are signed with (also written in `events/README.md`).
pub const SAMPLE_SECRET: &str = "hubsync-sample-webhook-secret";

const ZERO: &str = "0000000000000000000000000000000000000000";
const OLD: &str = "ecddabb624f6f5ba43816f5926e580a5f680a932";
const NEW: &str = "178864a7d521b6f5e720b386b2c2b0ef8563e0dc";

fn refs_changed(changes: Value) -> Value {
    json!({
        "eventKey": "repo:refs_changed",
        "date": "2026-11-24T10:15:30+0000",
        "actor": {"name": "jdoe", "emailAddress": "jane.doe@example.com", "active": true, "displayName": "Jane Doe",
                  "id": 101, "slug": "jdoe", "type": "NORMAL"},
        "repository": {"slug": "models", "id": 84, "name": "models", "hierarchyId": "e3c939f9ef4a7fae272e", "scmId": "git",
                       "state": "AVAILABLE", "statusMessage": "Available", "forkable": true,
                       "project": {"key": "DATA", "id": 12, "name": "Data Models", "public": false, "type": "NORMAL"},
                       "public": false, "archived": false},
        "changes": changes
    })
}

fn change(ref_id: &str, kind: &str, from: &str, to: &str, change_type: &str) -> Value {
    let display = ref_id
        .trim_start_matches("refs/heads/")
        .trim_start_matches("refs/tags/");
    json!({"ref": {"id": ref_id, "displayId": display, "type": kind}, "refId": ref_id,
           "fromHash": from, "toHash": to, "type": change_type})
}

struct Sample {
    name: &'static str,
    event_key: &'static str,
    body: Value,
    /// `None`: unsigned; `Some(secret)`: signed with it.
    signed_with: Option<&'static str>,
}

fn samples() -> Vec<Sample> {
    vec![
        Sample {
            name: "ping",
            event_key: "diagnostics:ping",
            body: json!({"test": true}),
            signed_with: Some(SAMPLE_SECRET),
        },
        Sample {
            name: "push-default-branch",
            event_key: "repo:refs_changed",
            body: refs_changed(json!([change("refs/heads/main", "BRANCH", OLD, NEW, "UPDATE")])),
            signed_with: Some(SAMPLE_SECRET),
        },
        Sample {
            name: "branch-created",
            event_key: "repo:refs_changed",
            body: refs_changed(json!([change(
                "refs/heads/feature/orders-v2",
                "BRANCH",
                ZERO,
                NEW,
                "ADD"
            )])),
            signed_with: Some(SAMPLE_SECRET),
        },
        Sample {
            name: "branch-deleted",
            event_key: "repo:refs_changed",
            body: refs_changed(json!([change(
                "refs/heads/feature/orders-v2",
                "BRANCH",
                NEW,
                ZERO,
                "DELETE"
            )])),
            signed_with: Some(SAMPLE_SECRET),
        },
        Sample {
            name: "tag-pushed",
            event_key: "repo:refs_changed",
            body: refs_changed(json!([change("refs/tags/v1.0.0", "TAG", ZERO, NEW, "ADD")])),
            signed_with: Some(SAMPLE_SECRET),
        },
        Sample {
            name: "bad-signature",
            event_key: "repo:refs_changed",
            body: refs_changed(json!([change("refs/heads/main", "BRANCH", OLD, NEW, "UPDATE")])),
            signed_with: Some("not-the-configured-secret"),
        },
    ]
}

pub fn write_all(dir: &Path) -> anyhow::Result<()> {
    for sub in ["bitbucket", "apigw-rest", "apigw-http"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    for (i, sample) in samples().into_iter().enumerate() {
        let body = serde_json::to_vec(&sample.body)?;
        let mut headers = vec![
            ("X-Event-Key".to_owned(), sample.event_key.to_owned()),
            (
                "X-Request-Id".to_owned(),
                format!("7f1d4a2c-0b9e-4c55-9a3e-5c2b0d8e1f{i:02}"),
            ),
            ("Content-Type".to_owned(), "application/json; charset=utf-8".to_owned()),
            (
                "User-Agent".to_owned(),
                "Atlassian HttpClient 4.2.0 / Bitbucket-9.2.0 (9002000) / Default".to_owned(),
            ),
        ];
        if let Some(secret) = sample.signed_with {
            let signature = hubsync_core::signature::sign(&body, &SecretString::from(secret.to_owned()));
            headers.push(("X-Hub-Signature".to_owned(), signature));
        }
        std::fs::write(dir.join("bitbucket").join(format!("{}.json", sample.name)), &body)?;
        let header_lines: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        std::fs::write(
            dir.join("bitbucket").join(format!("{}.headers", sample.name)),
            header_lines,
        )?;
        for (gateway, sub) in [(Gateway::Rest, "apigw-rest"), (Gateway::Http, "apigw-http")] {
            let event = apigw_event(gateway, "POST", &headers, &body);
            std::fs::write(
                dir.join(sub).join(format!("{}.json", sample.name)),
                serde_json::to_string_pretty(&event)? + "\n",
            )?;
        }
    }
    eprintln!("xtask: sample events written to {}", dir.display());
    Ok(())
}
