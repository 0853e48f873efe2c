//! Metrics of the Lambda functions in CloudWatch Embedded Metric Format: one JSON line on stdout
//! per delivery or synced message, which CloudWatch Logs turns into metrics (namespace
//! [`NAMESPACE`], dimension [`FUNCTION_DIMENSION`] = the function's name) with no API call and no
//! extra latency. The template's alarms watch them.
//!
//! | function | metric | unit | dimensions |
//! |----------|--------|------|------------|
//! | webhook  | `Deliveries` | Count | `Function`, `Verdict` (`queued`, `duplicate`, `ignored`, `ping`, `rejected`); and with `Status` (the HTTP status) |
//! | sync     | `SyncDuration` | Milliseconds | `Function` |
//! | sync     | `ModelsWritten`, `ModelsRemoved`, `ModelsMalformed`, `SyncFailures`, `DeadLetters` | Count | `Function` |
//!
//! The lines are built by plain functions ([`webhook_line`], [`sync_line`]); [`emit_webhook`] and
//! [`emit_sync`] print them once [`enable`] has named the function (the functions' `main` does at
//! its first invocation), and print nothing otherwise (tests, `hubsync serve`).

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use hubsync_core::deliveries::{DeliveryOutcome, OutcomeStatus};
use hubsync_core::webhook::WebhookResponse;
use serde_json::{Value, json};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Hubsync";
/// The dimension naming the function (`AWS_LAMBDA_FUNCTION_NAME`, e.g. `hub-webhook`).
pub const FUNCTION_DIMENSION: &str = "Function";

static FUNCTION: OnceLock<String> = OnceLock::new();

/// Turns emission on for this process, naming the function (later calls change nothing).
pub fn enable(function_name: &str) {
    let _ = FUNCTION.set(function_name.to_owned());
}

/// The line for one webhook request: its verdict (see [`WebhookResponse::verdict`]) and status.
pub fn webhook_line(function: &str, verdict: &str, status: u16, at: DateTime<Utc>) -> Value {
    json!({
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[FUNCTION_DIMENSION, "Verdict"], [FUNCTION_DIMENSION, "Verdict", "Status"]],
                "Metrics": [{"Name": "Deliveries", "Unit": "Count"}],
            }],
        },
        FUNCTION_DIMENSION: function,
        "Verdict": verdict,
        "Status": status.to_string(),
        "Deliveries": 1,
    })
}

/// The line for one message the sync handled (or found covered).
pub fn sync_line(function: &str, outcome: &DeliveryOutcome, at: DateTime<Utc>) -> Value {
    let stats = outcome.stats.clone().unwrap_or_default();
    let failed = u64::from(outcome.is_failure());
    let dead = u64::from(outcome.status == OutcomeStatus::DeadLettered);
    let mut metrics = vec![
        json!({"Name": "ModelsWritten", "Unit": "Count"}),
        json!({"Name": "ModelsRemoved", "Unit": "Count"}),
        json!({"Name": "ModelsMalformed", "Unit": "Count"}),
        json!({"Name": "SyncFailures", "Unit": "Count"}),
        json!({"Name": "DeadLetters", "Unit": "Count"}),
    ];
    let mut line = json!({
        FUNCTION_DIMENSION: function,
        "Outcome": outcome.status.as_str(),
        "Attempt": outcome.attempts,
        "ModelsWritten": stats.written,
        "ModelsRemoved": stats.removed,
        "ModelsMalformed": stats.malformed,
        "SyncFailures": failed,
        "DeadLetters": dead,
    });
    // A covered message was not synced: no duration to report.
    if outcome.status != OutcomeStatus::Covered {
        metrics.insert(0, json!({"Name": "SyncDuration", "Unit": "Milliseconds"}));
        line["SyncDuration"] = json!(outcome.duration_ms);
    }
    line["_aws"] = json!({
        "Timestamp": at.timestamp_millis(),
        "CloudWatchMetrics": [{
            "Namespace": NAMESPACE,
            "Dimensions": [[FUNCTION_DIMENSION]],
            "Metrics": metrics,
        }],
    });
    line
}

/// Prints the line of a webhook answer, if enabled.
pub fn emit_webhook(response: &WebhookResponse) {
    if let Some(function) = FUNCTION.get() {
        println!(
            "{}",
            webhook_line(function, response.verdict(), response.status.as_u16(), Utc::now())
        );
    }
}

/// Prints the line of a sync outcome, if enabled.
pub fn emit_sync(outcome: &DeliveryOutcome) {
    if let Some(function) = FUNCTION.get() {
        println!("{}", sync_line(function, outcome, Utc::now()));
    }
}

#[cfg(test)]
mod tests {
    use hubsync_core::consumer::Decision;
    use hubsync_core::deliveries::outcome_of;
    use hubsync_core::ports::SyncStats;

    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_764_000_000_000).unwrap()
    }

    /// The metric names a line declares, and its values.
    fn declared(line: &Value) -> Vec<(String, Value)> {
        line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let name = m["Name"].as_str().unwrap().to_owned();
                (name.clone(), line[&name].clone())
            })
            .collect()
    }

    #[test]
    fn a_rejected_delivery_is_counted_by_verdict_and_by_status() {
        let line = webhook_line("hub-webhook", "rejected", 401, at());

        let aws = &line["_aws"];
        assert_eq!(aws["Timestamp"], 1_764_000_000_000_i64);
        assert_eq!(aws["CloudWatchMetrics"][0]["Namespace"], "Hubsync");
        assert_eq!(
            aws["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Verdict"], ["Function", "Verdict", "Status"]])
        );
        assert_eq!(declared(&line), [("Deliveries".to_owned(), json!(1))]);
        assert_eq!(
            (&line["Function"], &line["Verdict"], &line["Status"]),
            (&json!("hub-webhook"), &json!("rejected"), &json!("401"))
        );
    }

    #[test]
    fn a_sync_reports_its_duration_and_counts_and_a_dead_letter_is_a_failure() {
        let mut synced = outcome_of(1, None, &Decision::Ack, std::time::Duration::from_millis(850), at());
        synced.stats = Some(SyncStats {
            written: 3,
            removed: 1,
            malformed: 2,
            ..SyncStats::default()
        });
        let dead = outcome_of(
            10,
            None,
            &Decision::DeadLetter,
            std::time::Duration::from_millis(5),
            at(),
        );

        let synced = sync_line("hub-sync", &synced, at());
        let dead = sync_line("hub-sync", &dead, at());

        assert_eq!(
            synced["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]])
        );
        assert_eq!(
            declared(&synced),
            [
                ("SyncDuration".to_owned(), json!(850)),
                ("ModelsWritten".to_owned(), json!(3)),
                ("ModelsRemoved".to_owned(), json!(1)),
                ("ModelsMalformed".to_owned(), json!(2)),
                ("SyncFailures".to_owned(), json!(0)),
                ("DeadLetters".to_owned(), json!(0)),
            ]
        );
        assert_eq!((&dead["SyncFailures"], &dead["DeadLetters"]), (&json!(1), &json!(1)));
    }

    #[test]
    fn a_covered_message_reports_no_duration() {
        let by = hubsync_core::ids::DeliveryId::parse("d-1").unwrap();
        let covered = outcome_of(1, None, &Decision::Covered { by }, std::time::Duration::ZERO, at());

        let line = sync_line("hub-sync", &covered, at());

        assert!(line.get("SyncDuration").is_none(), "{line}");
        assert!(declared(&line).iter().all(|(name, _)| name != "SyncDuration"));
    }
}
