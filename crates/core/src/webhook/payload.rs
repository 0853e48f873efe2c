//! The JSON Bitbucket Data Center posts for `repo:refs_changed`, and its conversion into the
//! normalized [`PushMessage`]. Only the fields the pipeline needs are read; everything else
//! (`commits`, `toCommit`, links, fields of future versions) is ignored, so newer servers keep working.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Deserialize;

use super::scan;
use crate::ids::{CommitId, DeliveryId, IdError, RepoRef};
use crate::push::{Actor, MessageKind, Provider, PushMessage, RefChange, RefChangeType, RefName, ShortText};

/// Why a payload could not be turned into a push.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not a repo:refs_changed payload: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the payload names an invalid repository: {0}")]
    Repository(IdError),
    #[error("change {index} has an invalid {field}: {source}")]
    Commit {
        index: usize,
        field: &'static str,
        source: IdError,
    },
    #[error("change {index} has an unknown type {value:?}; expected ADD, UPDATE or DELETE")]
    ChangeType { index: usize, value: String },
    #[error("the payload lists no changes")]
    NoChanges,
    #[error("the payload date {0:?} is not a date such as 2024-05-02T10:15:30+0000")]
    Date(String),
}

// The payload is read borrowing from the body: strings without escapes are not copied, and the
// members not listed here (`commits`, `toCommit`, links...) are skipped without being built.

/// A string borrowed from the body unless it has escapes (serde borrows a `Cow<str>` only when it
/// is not inside an `Option`, hence this wrapper).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct Text<'a>(#[serde(borrow)] pub(super) Cow<'a, str>);

impl Text<'_> {
    fn into_text(self) -> ShortText {
        match self.0 {
            Cow::Borrowed(text) => ShortText::new(text),
            Cow::Owned(text) => ShortText::from(text),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RefsChanged<'a> {
    #[serde(borrow)]
    pub(super) date: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) actor: Option<User<'a>>,
    #[serde(borrow)]
    pub(super) repository: Repository<'a>,
    #[serde(borrow)]
    pub(super) changes: Vec<Change<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct User<'a> {
    #[serde(borrow)]
    pub(super) name: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) display_name: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) email_address: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Repository<'a> {
    #[serde(borrow)]
    pub(super) slug: Cow<'a, str>,
    pub(super) id: Option<u64>,
    #[serde(borrow)]
    pub(super) project: Project<'a>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Project<'a> {
    #[serde(borrow)]
    pub(super) key: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Change<'a> {
    #[serde(rename = "ref", borrow)]
    pub(super) reference: Option<Ref<'a>>,
    #[serde(borrow)]
    pub(super) ref_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) from_hash: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) to_hash: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    pub(super) change_type: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Ref<'a> {
    #[serde(borrow)]
    pub(super) id: Cow<'a, str>,
}

/// A parsed `repo:refs_changed` delivery: the push to queue and when Bitbucket sent it.
#[derive(Debug, Clone)]
pub struct RefsChangedDelivery {
    pub push: PushMessage,
    /// The payload's `date`; `None` when the payload has none.
    pub sent_at: Option<DateTime<Utc>>,
}

/// Parses a `repo:refs_changed` body into the push to queue.
pub fn parse_refs_changed(
    body: &[u8],
    delivery_id: DeliveryId,
    received_at: DateTime<Utc>,
) -> Result<PushMessage, PayloadError> {
    parse_refs_changed_delivery(body, delivery_id, received_at).map(|d| d.push)
}

/// Parses a Bitbucket webhook `date`: `2024-05-02T10:15:30+0000` (offset without a colon), or
/// RFC 3339.
pub fn parse_date(text: &str) -> Result<DateTime<Utc>, PayloadError> {
    if let Some(date) = bitbucket_date(text) {
        return Ok(date);
    }
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| PayloadError::Date(text.chars().take(40).collect()))
}

/// The date as Bitbucket writes it, `2024-05-02T10:15:30+0000` exactly, read without chrono's
/// format interpreter (a tenth of the webhook's time on a one-change delivery); `None` for any
/// other shape or an out-of-range field, which [`parse_date`] leaves to chrono.
fn bitbucket_date(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let number = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let west = match b[19] {
        b'+' => false,
        b'-' => true,
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(number(0, 4)?).ok()?, number(5, 7)?, number(8, 10)?)?;
    let time = NaiveTime::from_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)?;
    let (hours, minutes) = (number(20, 22)?, number(22, 24)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let offset = TimeDelta::seconds(i64::from(hours * 3600 + minutes * 60));
    let local = date.and_time(time);
    let utc = if west {
        local.checked_add_signed(offset)?
    } else {
        local.checked_sub_signed(offset)?
    };
    Some(utc.and_utc())
}

/// Parses a `repo:refs_changed` body into the push to queue and the date it was sent: with the
/// fast reader ([`scan`]) when it is sure, else with serde_json, whose errors are the answer.
pub fn parse_refs_changed_delivery(
    body: &[u8],
    delivery_id: DeliveryId,
    received_at: DateTime<Utc>,
) -> Result<RefsChangedDelivery, PayloadError> {
    match scan::scan(body) {
        Some(scanned) => from_scanned(scanned, delivery_id, received_at),
        None => from_serde(body, delivery_id, received_at),
    }
}

/// The delivery the fast reader read: its changes are already checked and built.
pub(super) fn from_scanned(
    scanned: scan::Scanned<'_>,
    delivery_id: DeliveryId,
    received_at: DateTime<Utc>,
) -> Result<RefsChangedDelivery, PayloadError> {
    let [name, display_name, email_address] = scanned.actor;
    let actor = Actor {
        name,
        display_name,
        email_address,
    };
    let changes = scanned.changes;
    let repository = (scanned.project, scanned.slug, scanned.repository_id);
    assemble(
        scanned.date,
        repository,
        changes.is_empty(),
        || Ok(changes),
        actor,
        delivery_id,
        received_at,
    )
}

/// The delivery as serde_json reads it (every body the fast reader leaves, and the reference the
/// property tests hold the fast reader to).
pub(super) fn from_serde(
    body: &[u8],
    delivery_id: DeliveryId,
    received_at: DateTime<Utc>,
) -> Result<RefsChangedDelivery, PayloadError> {
    let payload = serde_json::from_slice::<RefsChanged<'_>>(body)?;
    let actor = payload.actor.map_or_else(Actor::default, |u| Actor {
        name: u.name.map(Text::into_text),
        display_name: u.display_name.map(Text::into_text),
        email_address: u.email_address.map(Text::into_text),
    });
    let no_changes = payload.changes.is_empty();
    let changes = || {
        // Sized once: a delivery may list 1,000 changes.
        let mut changes = Vec::with_capacity(payload.changes.len());
        for (index, c) in payload.changes.into_iter().enumerate() {
            let change_type = match &*c.change_type {
                "ADD" => RefChangeType::Add,
                "UPDATE" => RefChangeType::Update,
                "DELETE" => RefChangeType::Delete,
                other => {
                    return Err(PayloadError::ChangeType {
                        index,
                        value: other.chars().take(32).collect(),
                    });
                }
            };
            let commit = |field: &'static str, value: &str| {
                CommitId::parse(value).map_err(|source| PayloadError::Commit { index, field, source })
            };
            let ref_id = c
                .ref_id
                .map(|text| RefName::new(&text.0))
                .or_else(|| c.reference.map(|r| RefName::new(&r.id)))
                .ok_or_else(|| serde::de::Error::custom(format!("change {index} has neither refId nor ref.id")))
                .map_err(PayloadError::Json)?;
            changes.push(RefChange {
                ref_id,
                change_type,
                from_hash: commit("fromHash", &c.from_hash)?,
                to_hash: commit("toHash", &c.to_hash)?,
            });
        }
        Ok(changes)
    };
    let repository = (
        &*payload.repository.project.key,
        &*payload.repository.slug,
        payload.repository.id,
    );
    let date = payload.date.as_ref().map(|d| &*d.0);
    assemble(date, repository, no_changes, changes, actor, delivery_id, received_at)
}

/// The push from what either reader read, checked in one order (the date, the repository, that
/// there are changes, then each change), so both report the same first error.
fn assemble(
    date: Option<&str>,
    (project, slug, repository_id): (&str, &str, Option<u64>),
    no_changes: bool,
    changes: impl FnOnce() -> Result<Vec<RefChange>, PayloadError>,
    actor: Actor,
    delivery_id: DeliveryId,
    received_at: DateTime<Utc>,
) -> Result<RefsChangedDelivery, PayloadError> {
    let sent_at = date.map(parse_date).transpose()?;
    let repo = RepoRef::new(project, slug).map_err(PayloadError::Repository)?;
    if no_changes {
        return Err(PayloadError::NoChanges);
    }
    let push = PushMessage {
        kind: MessageKind::Push,
        provider: Provider::BitbucketDataCenter,
        delivery_id,
        repo,
        repository_id,
        changes: changes()?,
        actor,
        received_at,
        from_commit: None,
    };
    Ok(RefsChangedDelivery { push, sent_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "ecddabb624f6f5ba43816f5926e580a5f680a932";
    const B: &str = "178864a7d521b6f5e720b386b2c2b0ef8563e0dc";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn change(ref_id: &str, from: &str, to: &str, ty: &str) -> serde_json::Value {
        let display = ref_id.rsplit('/').next().unwrap();
        json!({"ref": {"id": ref_id, "displayId": display, "type": "BRANCH"}, "refId": ref_id, "fromHash": from, "toHash": to, "type": ty})
    }

    fn payload(project: &str, slug: &str, changes: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "eventKey": "repo:refs_changed",
            "date": "2024-05-02T10:15:30+0000",
            "actor": {"name": "admin", "emailAddress": "admin@example.com", "id": 1, "displayName": "Administrator", "active": true, "slug": "admin", "type": "NORMAL"},
            "repository": {"slug": slug, "id": 84, "name": slug, "scmId": "git", "state": "AVAILABLE", "statusMessage": "Available", "forkable": true,
                "project": {"key": project, "id": 84, "name": "Project", "public": false, "type": "NORMAL"}, "public": false},
            "changes": changes
        }))
        .unwrap()
    }

    fn parse(body: &[u8]) -> Result<PushMessage, PayloadError> {
        parse_refs_changed(body, DeliveryId::parse("d-1").unwrap(), Utc::now())
    }

    #[test]
    fn a_push_to_main_is_normalized() {
        let push = parse(&payload(
            "PROJ",
            "models",
            vec![change("refs/heads/main", A, B, "UPDATE")],
        ))
        .unwrap();
        assert_eq!(push.repo.to_string(), "PROJ/models");
        assert_eq!(push.repository_id, Some(84));
        assert_eq!(push.changes[0].ref_id, "refs/heads/main");
        assert_eq!(push.changes[0].change_type, RefChangeType::Update);
        assert_eq!(push.changes[0].to_hash.as_str(), B);
        assert_eq!(push.actor.name.as_deref(), Some("admin"));
    }

    #[test]
    fn fields_newer_servers_add_are_ignored() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&payload("P", "r", vec![change("refs/heads/main", A, B, "UPDATE")])).unwrap();
        v["commits"] = json!([{"id": B, "displayId": "178864a", "message": "x", "parents": [{"id": A}]}]);
        v["toCommit"] = json!({"id": B, "author": {"name": "a"}});
        v["repository"]["hierarchyId"] = json!("abc");
        v["changes"][0]["someFutureField"] = json!({"x": 1});
        assert!(parse(&serde_json::to_vec(&v).unwrap()).is_ok());
    }

    #[test]
    fn personal_projects_and_unicode_names_are_kept() {
        let push = parse(&payload(
            "~jdoe",
            "modèles-日本",
            vec![change("refs/heads/main", ZERO, B, "ADD")],
        ))
        .unwrap();
        assert_eq!(push.repo.project(), "~jdoe");
        assert_eq!(push.repo.slug(), "modèles-日本");
        assert!(push.changes[0].from_hash.is_zero());
    }

    #[test]
    fn escaped_strings_are_read_like_plain_ones() {
        let body = format!(
            r#"{{"date": "2024-05-02T10:15:30+0000", "actor": {{"name": "j\u00e9r\u00f4me"}},
               "repository": {{"slug": "mod\u00e8les", "project": {{"key": "P"}}}},
               "changes": [{{"refId": "refs\/heads\/main", "fromHash": "{A}", "toHash": "{B}", "type": "UPDATE"}}]}}"#
        );
        let push = parse(body.as_bytes()).unwrap();
        assert_eq!(push.repo.slug(), "modèles");
        assert_eq!(push.changes[0].ref_id, "refs/heads/main");
        assert_eq!(push.actor.name.as_deref(), Some("jérôme"));
    }

    #[test]
    fn a_thousand_changes_are_all_kept() {
        let changes = (0..1000)
            .map(|i| change(&format!("refs/heads/b{i}"), A, B, "UPDATE"))
            .collect();
        assert_eq!(parse(&payload("P", "r", changes)).unwrap().changes.len(), 1000);
    }

    #[test]
    fn missing_fields_are_named_in_the_error() {
        let err = parse(br#"{"changes": []}"#).unwrap_err().to_string();
        assert!(err.contains("repository"), "{err}");
        let err = parse(&payload(
            "P",
            "r",
            vec![json!({"refId": "refs/heads/main", "toHash": B, "type": "UPDATE"})],
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("fromHash"), "{err}");
    }

    #[test]
    fn the_date_is_read_in_bitbucket_format_and_in_rfc_3339() {
        let at = |t| parse_date(t).unwrap().to_rfc3339();
        assert_eq!(at("2024-05-02T10:15:30+0000"), "2024-05-02T10:15:30+00:00");
        assert_eq!(at("2024-05-02T20:15:30+1000"), "2024-05-02T10:15:30+00:00");
        assert_eq!(at("2024-05-02T10:15:30.250+0000"), "2024-05-02T10:15:30.250+00:00");
        assert_eq!(at("2024-05-02T10:15:30Z"), "2024-05-02T10:15:30+00:00");
        assert!(matches!(parse_date("yesterday"), Err(PayloadError::Date(_))));
        let body = payload("P", "r", vec![change("refs/heads/main", A, B, "UPDATE")]);
        let delivery = parse_refs_changed_delivery(&body, DeliveryId::parse("d").unwrap(), Utc::now()).unwrap();
        assert_eq!(delivery.sent_at.unwrap().to_rfc3339(), "2024-05-02T10:15:30+00:00");
    }

    proptest::proptest! {
        #[test]
        fn bitbucket_dates_are_read_as_chrono_reads_them(
            y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62, s in 0u32..62,
            sign in proptest::sample::select(vec!['+', '-', 'Z', ' ']), oh in 0u32..30, om in 0u32..62,
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{sign}{oh:02}{om:02}");
            let chrono = DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f%z").map(|d| d.with_timezone(&Utc)).ok();
            if let Some(fast) = bitbucket_date(&text) {
                proptest::prop_assert_eq!(Some(fast), chrono, "{}", text);
            }
            proptest::prop_assert_eq!(parse_date(&text).ok(), chrono.or_else(|| DateTime::parse_from_rfc3339(&text).ok().map(|d| d.with_timezone(&Utc))));
        }
    }

    #[test]
    fn every_day_of_leap_and_common_years_is_read_as_chrono_reads_it() {
        for year in [0, 1, 1900, 1970, 1999, 2000, 2023, 2024, 2100, 9999] {
            for month in 1..=13 {
                for day in 0..=32 {
                    let text = format!("{year:04}-{month:02}-{day:02}T23:59:59-2359");
                    let chrono = DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%z")
                        .map(|d| d.with_timezone(&Utc))
                        .ok();

                    assert_eq!(bitbucket_date(&text), chrono, "{text}");
                }
            }
        }
    }

    #[test]
    fn bad_hashes_and_types_are_refused() {
        assert!(matches!(
            parse(&payload(
                "P",
                "r",
                vec![change("refs/heads/main", "nothex", B, "UPDATE")]
            )),
            Err(PayloadError::Commit { field: "fromHash", .. })
        ));
        assert!(matches!(
            parse(&payload("P", "r", vec![change("refs/heads/main", A, B, "MERGE")])),
            Err(PayloadError::ChangeType { .. })
        ));
        assert!(matches!(
            parse(&payload("P", "r", vec![])),
            Err(PayloadError::NoChanges)
        ));
    }
}
