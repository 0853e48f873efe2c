//! Events shaped exactly as AWS delivers them to the functions: API Gateway REST (payload 1.0)
//! and HTTP API (payload 2.0) proxy requests for the webhook, and SQS batches for the sync.

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{Value, json};

/// Which API Gateway flavour delivers the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    Rest,
    Http,
}

/// An API Gateway proxy event for a request to `/gateway/public/sync`.
pub fn apigw_event(gateway: Gateway, method: &str, headers: &[(String, String)], body: &[u8]) -> Value {
    let headers_obj: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
        .collect();
    let (body, base64) = match std::str::from_utf8(body) {
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (Value::String(base64_encode(body)), true),
    };
    match gateway {
        Gateway::Rest => json!({
            "resource": "/gateway/public/sync",
            "path": "/gateway/public/sync",
            "httpMethod": method,
            "headers": headers_obj,
            "multiValueHeaders": headers_obj.iter().map(|(k, v)| (k.clone(), json!([v]))).collect::<serde_json::Map<_, _>>(),
            "queryStringParameters": null,
            "multiValueQueryStringParameters": null,
            "pathParameters": null,
            "stageVariables": null,
            "requestContext": {
                "accountId": "123456789012", "apiId": "abc123defg", "resourceId": "r3s0urc3", "resourcePath": "/gateway/public/sync",
                "stage": "prod", "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "httpMethod": method,
                "path": "/prod/gateway/public/sync", "protocol": "HTTP/1.1", "requestTimeEpoch": 1714644930000i64,
                "domainName": "abc123defg.execute-api.eu-west-1.amazonaws.com",
                "identity": {"sourceIp": "203.0.113.10", "userAgent": "Atlassian HttpClient 4.2.0 / Bitbucket-9.2.0 (9002000) / Default"}
            },
            "body": body,
            "isBase64Encoded": base64
        }),
        Gateway::Http => json!({
            "version": "2.0",
            "routeKey": "POST /gateway/public/sync",
            "rawPath": "/gateway/public/sync",
            "rawQueryString": "",
            "headers": headers_obj,
            "requestContext": {
                "accountId": "123456789012", "apiId": "abc123defg", "domainName": "abc123defg.execute-api.eu-west-1.amazonaws.com",
                "domainPrefix": "abc123defg",
                "http": {"method": method, "path": "/gateway/public/sync", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10",
                         "userAgent": "Atlassian HttpClient 4.2.0 / Bitbucket-9.2.0 (9002000) / Default"},
                "requestId": "JKJaXmPLvHcESHA=", "routeKey": "POST /gateway/public/sync", "stage": "$default",
                "time": "02/May/2024:10:15:30 +0000", "timeEpoch": 1714644930000i64
            },
            "body": body,
            "isBase64Encoded": base64
        }),
    }
}

/// Parses an event into the request `lambda_http` hands to the handler.
pub fn request_from_event(event: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string()).expect("lambda_http reads the API Gateway event")
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The SQS event the Lambda event source mapping would build from received messages.
pub fn sqs_event(queue_arn: &str, messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(super::base64_encode(b""), "");
        assert_eq!(super::base64_encode(b"f"), "Zg==");
        assert_eq!(super::base64_encode(b"fo"), "Zm8=");
        assert_eq!(super::base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
