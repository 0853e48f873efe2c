//! Webhook deliveries as Bitbucket Data Center 9.x sends them: `repo:refs_changed` for pushes
//! and `diagnostics:ping` for "Test connection".
//!
//! Headers: `X-Event-Key`, `X-Request-Id` (a new UUID per delivery, kept on redelivery),
//! `Content-Type: application/json; charset=utf-8`, `User-Agent: Atlassian HttpClient ...`,
//! and, when the webhook has a secret, `X-Hub-Signature: sha256=<hex>`: the lower-case hex
//! HMAC-SHA256 of the exact body bytes keyed with the secret.

use hmac::{KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::config::User;
use crate::error::SimError;
use crate::git::ZERO_HASH;
use crate::push::{Push, RefChange};
use crate::repo::Repo;
use crate::rest::{RestCommit, RestRepository};

/// The `User-Agent` Bitbucket Data Center 9.2 sends webhooks with.
pub const USER_AGENT: &str = "Atlassian HttpClient 4.2.0 / Bitbucket-9.2.0 (9002000) / Default";

/// How many commits `repo:refs_changed` lists at most (Bitbucket's default).
const MAX_COMMITS: usize = 5;

/// One webhook request, ready to send (again). Sending the same value twice is a redelivery:
/// same body, same `X-Request-Id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// `repo:refs_changed`, `diagnostics:ping`.
    pub event_key: String,
    /// The `X-Request-Id` UUID.
    pub delivery_id: String,
    /// Every header, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes (what the signature covers).
    pub body: Vec<u8>,
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl DeliveryResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl WebhookDelivery {
    fn new(event_key: &str, body: Vec<u8>, secret: Option<&str>) -> Self {
        let delivery_id = uuid::Uuid::new_v4().to_string();
        let mut headers = vec![
            ("X-Event-Key".to_owned(), event_key.to_owned()),
            ("X-Request-Id".to_owned(), delivery_id.clone()),
            ("Content-Type".to_owned(), "application/json; charset=utf-8".to_owned()),
            ("User-Agent".to_owned(), USER_AGENT.to_owned()),
        ];
        if let Some(secret) = secret {
            headers.push(("X-Hub-Signature".to_owned(), signature(secret, &body)));
        }
        Self {
            event_key: event_key.to_owned(),
            delivery_id,
            headers,
            body,
        }
    }

    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// POSTs this delivery to `url` and returns the receiver's answer. Any HTTP status counts
    /// as an answer; only transport failures are errors.
    pub async fn send(&self, url: &str) -> Result<DeliveryResponse, SimError> {
        let failed = |source| SimError::Delivery {
            url: url.to_owned(),
            source,
        };
        let client = reqwest::Client::builder().no_proxy().build().map_err(failed)?;
        let mut request = client.post(url).body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes().await.map_err(failed)?.to_vec();
        tracing::debug!(url, status, event = %self.event_key, "webhook delivered");
        Ok(DeliveryResponse { status, headers, body })
    }
}

/// `sha256=` + lower-case hex HMAC-SHA256 of `body` keyed with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefsChanged<'a> {
    event_key: &'static str,
    date: String,
    actor: &'a User,
    repository: RestRepository,
    changes: &'a [RefChange],
    #[serde(skip_serializing_if = "Option::is_none")]
    commits: Option<Vec<RestCommit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_commit: Option<RestCommit<RestCommit>>,
}

/// The `repo:refs_changed` delivery for `push`.
pub(crate) fn refs_changed(
    repo: &Repo,
    push: &Push,
    actor: &User,
    commit_details: bool,
    secret: Option<&str>,
) -> Result<WebhookDelivery, SimError> {
    let (commits, to_commit) = if commit_details {
        let (commits, to_commit) = commit_details_of(repo, push)?;
        (Some(commits), to_commit)
    } else {
        (None, None)
    };
    let payload = RefsChanged {
        event_key: "repo:refs_changed",
        date: bitbucket_date(chrono::Utc::now()),
        actor,
        repository: RestRepository::of(repo),
        changes: &push.changes,
        commits,
        to_commit,
    };
    let body = serde_json::to_vec(&payload).map_err(SimError::Payload)?;
    Ok(WebhookDelivery::new("repo:refs_changed", body, secret))
}

/// The `diagnostics:ping` delivery: body `{"test": true}`.
pub(crate) fn ping(secret: Option<&str>) -> WebhookDelivery {
    WebhookDelivery::new("diagnostics:ping", br#"{"test":true}"#.to_vec(), secret)
}

/// Bitbucket's webhook date format: `2024-05-02T10:15:30+0000`.
fn bitbucket_date(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

/// `commits`: up to 5 newest commits the push brought (reachable from a new value, not from
/// the old value or, for a new ref, from any other ref); `toCommit`: the commit the first
/// non-delete change points at, with its parents in full.
fn commit_details_of(repo: &Repo, push: &Push) -> Result<(Vec<RestCommit>, Option<RestCommit<RestCommit>>), SimError> {
    let git = &repo.inner.git;
    let mut commits: Vec<RestCommit> = Vec::new();
    for change in &push.changes {
        if change.to_hash == ZERO_HASH {
            continue;
        }
        let Some(to) = git.resolve_commit(&change.to_hash)? else {
            continue;
        };
        let exclude: Vec<String> = if change.from_hash == ZERO_HASH {
            other_refs(repo, &change.ref_id)?
        } else {
            git.resolve_commit(&change.from_hash)?.into_iter().collect()
        };
        for info in git.commits_between(&to, &exclude, MAX_COMMITS)? {
            if commits.len() < MAX_COMMITS && !commits.iter().any(|c| c.id == info.id) {
                commits.push(RestCommit::new(&info));
            }
        }
    }
    let to_commit = match push
        .changes
        .iter()
        .find(|c| c.to_hash != ZERO_HASH)
        .map(|c| git.resolve_commit(&c.to_hash))
        .transpose()?
        .flatten()
    {
        Some(id) => {
            let info = git.commit_info(&id)?;
            let parents = info
                .parents
                .iter()
                .map(|p| git.commit_info(p).map(|parent| RestCommit::new(&parent)))
                .collect::<Result<Vec<_>, _>>()?;
            Some(RestCommit::with_parents(&info, parents))
        }
        None => None,
    };
    Ok((commits, to_commit))
}

/// The values of every ref but `ref_id`.
fn other_refs(repo: &Repo, ref_id: &str) -> Result<Vec<String>, SimError> {
    let out = repo
        .inner
        .git
        .run(["for-each-ref", "--format=%(refname)%00%(objectname)"])?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|line| line.split_once('\0'))
        .filter(|(name, _)| *name != ref_id)
        .map(|(_, id)| id.to_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn ping_is_unsigned_without_secret_and_carries_its_event_key() {
        let delivery = ping(None);

        assert_eq!(delivery.header("x-event-key"), Some("diagnostics:ping"));
        assert!(delivery.header("X-Hub-Signature").is_none());
        assert_eq!(delivery.json().expect("json")["test"], true);
    }

    #[test]
    fn dates_use_bitbucket_offset_format() {
        let at = chrono::DateTime::from_timestamp(1_714_644_930, 0).expect("valid");
        assert_eq!(bitbucket_date(at), "2024-05-02T10:15:30+0000");
    }
}
