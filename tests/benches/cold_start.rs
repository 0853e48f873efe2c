//! Cold start of the release `webhook` and `sync` binaries against a Python 3 + boto3 function
//! doing the same work (issue 11, goal 5: hubsync at most a tenth of the Python time).
//!
//! Each function is started as Lambda starts it: a fresh process under the Lambda Runtime API
//! emulator (`hubsync_tests::runtime_api`), AWS served by moto. The figure is the time from exec
//! to the first answered invocation, which includes the SDK set-up and the secret fetch:
//! - webhook: a signed 1-change `repo:refs_changed` delivery through API Gateway (HTTP API):
//!   secret fetched, signature verified, payload parsed, message sent to the SQS FIFO queue;
//! - sync: an SQS batch of one push for a repository that is not registered: secret fetched,
//!   the registry read in DynamoDB, the push acknowledged. The sync also records the push's
//!   outcome in the delivery log (one DynamoDB `UpdateItem`, the slowest of its three requests on
//!   moto), which the peer does not: the comparison is at the sync's expense. Both functions start
//!   reading the secret while the runtime fetches the first event, and the sync reads the
//!   registry without waiting for the secret (the first answer waits for the slower of the two),
//!   but the push is answered only once both are read and the outcome is recorded. The sync builds its
//!   Bitbucket HTTP client (and reads the system's trust roots for it) at its first Bitbucket
//!   request, which this push does not make; its AWS clients read them at start-up as before.
//!
//! The Python peer is written here: a minimal custom-runtime loop over the Runtime API with
//! `urllib`, boto3 clients created at import time (as Lambda handlers usually do), the same AWS
//! calls. It runs with the Python of `.venv` (moto's, which has boto3).
//!
//! `cargo bench -p hubsync-tests --bench cold_start` needs the release binaries
//! (`cargo build --release --bin webhook --bin sync`; `cargo xtask bench` builds them) and runs
//! each function five times, keeping the median; under `cargo test` it starts the debug webhook
//! and its Python peer once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hubsync_core::ids::DeliveryId;
use hubsync_core::signature::sign;
use hubsync_core::webhook::payload::parse_refs_changed;
use hubsync_tests::aws::TestAws;
use hubsync_tests::lambda::{Gateway, apigw_event};
use hubsync_tests::runtime_api::{Invocation, RuntimeApi};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::process::Command;

const WEBHOOK_SECRET: &str = "cold-start-webhook-secret";
const WAIT: Duration = Duration::from_secs(60);

/// The Python peer: `python3 peer.py webhook|sync`.
const PYTHON_PEER: &str = r#"
import hashlib, hmac, json, os, sys, urllib.request
import boto3

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
secrets = boto3.client("secretsmanager")
if sys.argv[1] == "webhook":
    sqs = boto3.client("sqs")
else:
    dynamodb = boto3.client("dynamodb")
_secret = None

def hub_secret():
    global _secret
    if _secret is None:
        _secret = json.loads(secrets.get_secret_value(SecretId=os.environ["HUB_SECRET_ID"])["SecretString"])
    return _secret

def webhook(event):
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    body = event["body"].encode()
    expected = "sha256=" + hmac.new(hub_secret()["webhookSecret"].encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, headers.get("x-hub-signature", "")):
        return {"statusCode": 401, "body": "invalid signature"}
    payload = json.loads(body)
    repo = payload["repository"]["project"]["key"] + "/" + payload["repository"]["slug"]
    delivery = headers["x-request-id"]
    message = {"kind": "push", "deliveryId": delivery, "repo": repo,
               "changes": [{"refId": c["refId"], "type": c["type"], "fromHash": c["fromHash"], "toHash": c["toHash"]}
                           for c in payload["changes"]]}
    sqs.send_message(QueueUrl=os.environ["HUB_QUEUE_URL"], MessageBody=json.dumps(message),
                     MessageGroupId=repo, MessageDeduplicationId=delivery)
    return {"statusCode": 202, "body": json.dumps({"status": "queued"})}

def sync(event):
    hub_secret()
    failures = []
    for record in event["Records"]:
        push = json.loads(record["body"])
        repo = push["repo"]
        item = dynamodb.get_item(TableName=os.environ["HUB_TABLE"],
                                 Key={"pk": {"S": "REGISTRY"}, "sk": {"S": "REPO#" + repo}}).get("Item")
        if item is not None:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}

handler = webhook if sys.argv[1] == "webhook" else sync
while True:
    with urllib.request.urlopen(API + "/invocation/next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    answer = json.dumps(handler(event)).encode()
    urllib.request.urlopen(urllib.request.Request(API + "/invocation/" + request_id + "/response", data=answer, method="POST")).read()
"#;

/// A function to start: a program and its arguments.
struct Program {
    path: PathBuf,
    args: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(measure(bench))
}

/// The release (or, under `cargo test`, debug) binaries: next to this bench's own directory.
fn function_binary(bench: bool, package: &str, name: &str) -> anyhow::Result<PathBuf> {
    if !bench {
        return Ok(hubsync_tests::cargo_bin(package, name));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("the target directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build --release --workspace --bin webhook --bin sync` first (cargo xtask bench does)",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `program` under a fresh Runtime API with `env`, hands it `event`, and returns the time
/// from exec to its answer, and the answer.
async fn cold_start(program: &Program, env: &[(&str, &str)], event: Value) -> anyhow::Result<(Duration, Value)> {
    let api = RuntimeApi::start().await;
    let endpoint = hubsync_tests::moto::moto().endpoint.clone();
    let mut cmd = Command::new(&program.path);
    cmd.args(&program.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "cold-start")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut process = cmd
        .spawn()
        .with_context(|| format!("starting {}", program.path.display()))?;
    let answer = api.invoke(event, WAIT).await;
    let took = started.elapsed();
    let _ = process.kill().await;
    match answer {
        Invocation::Response(answer) => Ok((took, answer)),
        Invocation::Error(error) => bail!("{} failed: {error}", program.path.display()),
    }
}

/// A dated 1-change `repo:refs_changed` body of `DATA/cold`.
fn delivery_body() -> String {
    let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%z").to_string();
    json!({"eventKey": "repo:refs_changed", "date": date,
        "actor": {"name": "jdoe", "emailAddress": "jdoe@example.com", "displayName": "Jane Doe"},
        "repository": {"slug": "cold", "id": 7, "project": {"key": "DATA"}},
        "changes": [{"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}, "refId": "refs/heads/main",
                     "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932", "toHash": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc",
                     "type": "UPDATE"}]})
    .to_string()
}

/// A signed 1-change delivery as API Gateway (HTTP API) hands it over, with a fresh delivery id.
fn delivery_event() -> Value {
    let body = delivery_body();
    let signature = sign(body.as_bytes(), &SecretString::from(WEBHOOK_SECRET.to_owned()));
    let headers = [
        ("X-Event-Key".to_owned(), "repo:refs_changed".to_owned()),
        ("X-Request-Id".to_owned(), uuid::Uuid::new_v4().to_string()),
        ("X-Hub-Signature".to_owned(), signature),
        ("Content-Type".to_owned(), "application/json".to_owned()),
    ];
    apigw_event(Gateway::Http, "POST", &headers, body.as_bytes())
}

/// An SQS batch of one push of the unregistered `DATA/cold`, the message as the webhook queues it.
fn sync_event() -> Value {
    let delivery = uuid::Uuid::new_v4().to_string();
    let push = parse_refs_changed(
        delivery_body().as_bytes(),
        DeliveryId::parse(&delivery).expect("a delivery id"),
        chrono::Utc::now(),
    )
    .expect("the body parses");
    let now = chrono::Utc::now().timestamp_millis().to_string();
    json!({"Records": [{
        "messageId": uuid::Uuid::new_v4().to_string(), "receiptHandle": "cold-start-receipt",
        "body": serde_json::to_string(&push).expect("a message body"),
        "md5OfBody": "", "messageAttributes": {}, "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:cold.fifo", "awsRegion": "us-east-1",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now, "MessageGroupId": "DATA/cold",
                       "MessageDeduplicationId": delivery, "SequenceNumber": "18849496460467696128",
                       "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": now}}]})
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Cold-starts `program` `runs` times; the median time.
async fn median_cold_start(
    program: &Program,
    env: &[(&str, &str)],
    event: fn() -> Value,
    accept: fn(&Value) -> bool,
    runs: usize,
) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let (took, answer) = cold_start(program, env, event()).await?;
        if !accept(&answer) {
            bail!("{} answered {answer}", program.path.display());
        }
        times.push(took);
    }
    Ok(median(times))
}

fn print(figure: &str, value: Duration, peer: Duration) {
    let (v, p) = (value.as_secs_f64() * 1000.0, peer.as_secs_f64() * 1000.0);
    let line = json!({"figure": figure, "value": (v * 10.0).round() / 10.0, "unit": "ms",
        "floor": "Python 3 + boto3, same work", "floor_value": (p * 10.0).round() / 10.0,
        "ratio": ((v / p) * 1000.0).round() / 1000.0, "goal": "<= 0.1x peer"});
    println!("hubsync-bench {line}");
}

async fn measure(bench: bool) -> anyhow::Result<()> {
    let secret = json!({"baseUrl": "http://127.0.0.1:9", "accessToken": "unused", "webhookSecret": WEBHOOK_SECRET});
    let aws = TestAws::new(&secret.to_string()).await;
    let r = &aws.resources;
    let peer_script = tempfile::NamedTempFile::with_suffix(".py")?;
    std::fs::write(peer_script.path(), PYTHON_PEER)?;
    let python = hubsync_tests::python::venv_bin().join("python3");
    let peer = |function: &str| Program {
        path: python.clone(),
        args: vec![peer_script.path().display().to_string(), function.to_owned()],
    };
    let runs = if bench { 5 } else { 1 };
    let binary = |package: &'static str, name: &'static str| {
        tokio::task::spawn_blocking(move || function_binary(bench, package, name))
    };

    let webhook = Program {
        path: binary("hubsync-webhook-function", "webhook").await??,
        args: Vec::new(),
    };
    let env = [
        ("HUB_QUEUE_URL", r.queue_url.as_str()),
        ("HUB_SECRET_ID", r.secret_id.as_str()),
    ];
    let accepted = |answer: &Value| answer["statusCode"] == 202;
    let rust = median_cold_start(&webhook, &env, delivery_event, accepted, runs).await?;
    let python = median_cold_start(&peer("webhook"), &env, delivery_event, accepted, runs).await?;
    print(
        "cold start to first answer, webhook (secret, verify, parse, SQS send), ms",
        rust,
        python,
    );
    if !bench {
        return Ok(());
    }

    let sync = Program {
        path: binary("hubsync-sync-function", "sync").await??,
        args: Vec::new(),
    };
    let env = [
        ("HUB_TABLE", r.table.as_str()),
        ("HUB_SECRET_ID", r.secret_id.as_str()),
        ("HUB_QUEUE_URL", r.queue_url.as_str()),
    ];
    let acked = |answer: &Value| answer["batchItemFailures"] == json!([]);
    let rust = median_cold_start(&sync, &env, sync_event, acked, runs).await?;
    let python = median_cold_start(&peer("sync"), &env, sync_event, acked, runs).await?;
    print(
        "cold start to first answer, sync (secret, registry read, ack), ms",
        rust,
        python,
    );
    Ok(())
}
