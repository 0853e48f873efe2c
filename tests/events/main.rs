//! The sample events in `events/` stay true: every signed sample's `X-Hub-Signature` is the HMAC
//! of its exact body with the sample secret (except `bad-signature`, which must not be), and the
//! API Gateway wrappers carry the same body and headers as the raw Bitbucket delivery.

use std::path::Path;

use hubsync_core::signature::Signature;
use secrecy::SecretString;
use serde_json::Value;

const SAMPLE_SECRET: &str = "hubsync-sample-webhook-secret";
const NAMES: [&str; 6] = [
    "ping",
    "push-default-branch",
    "branch-created",
    "branch-deleted",
    "tag-pushed",
    "bad-signature",
];

fn events_dir() -> std::path::PathBuf {
    hubsync_tests::workspace_root().join("events")
}

fn raw(name: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let dir = events_dir().join("bitbucket");
    let body = std::fs::read(dir.join(format!("{name}.json"))).expect("raw body");
    let headers = std::fs::read_to_string(dir.join(format!("{name}.headers")))
        .expect("headers file")
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    (body, headers)
}

fn verifies(body: &[u8], signature: &str) -> bool {
    let secret = SecretString::from(SAMPLE_SECRET.to_owned());
    Signature::parse(signature)
        .and_then(|s| s.verify(body, [&secret]))
        .is_ok()
}

#[test]
fn every_raw_sample_is_signed_with_the_documented_secret() {
    for name in NAMES {
        let (body, headers) = raw(name);
        let signature = headers
            .iter()
            .find(|(k, _)| k == "X-Hub-Signature")
            .map(|(_, v)| v.as_str())
            .expect(name);
        assert_eq!(verifies(&body, signature), name != "bad-signature", "{name}");
    }
}

#[test]
fn the_documented_secret_is_the_one_in_the_readme() {
    let readme = std::fs::read_to_string(events_dir().join("README.md")).expect("events/README.md");
    assert!(readme.contains(SAMPLE_SECRET));
}

#[test]
fn api_gateway_samples_wrap_the_raw_delivery_exactly() {
    for sub in ["apigw-rest", "apigw-http"] {
        for name in NAMES {
            let (body, headers) = raw(name);
            let path = events_dir().join(sub).join(format!("{name}.json"));
            let event: Value = serde_json::from_slice(&std::fs::read(&path).expect("event")).expect("JSON");
            assert_eq!(
                event["body"].as_str().map(str::as_bytes),
                Some(body.as_slice()),
                "{}",
                path.display()
            );
            assert_eq!(event["isBase64Encoded"], false);
            for (k, v) in &headers {
                assert_eq!(
                    event["headers"][k.to_ascii_lowercase()].as_str(),
                    Some(v.as_str()),
                    "{} {k}",
                    path.display()
                );
            }
            let request = hubsync_tests::lambda::request_from_event(&event);
            assert!(
                request.uri().path().ends_with("/gateway/public/sync"),
                "{}",
                Path::new(&path).display()
            );
        }
    }
}
