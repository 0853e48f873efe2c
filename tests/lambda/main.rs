//! The real `webhook` and `sync` binaries, run as Lambda runs them: each process talks to a
//! Lambda Runtime API emulator, with its configuration in the environment the template sets and
//! AWS served by moto. A push to the simulated Bitbucket Data Center goes through both functions
//! into DynamoDB, and their logs are JSON lines that carry the delivery id and never a secret.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubsync_aws::DynamoStore;
use hubsync_bitbucket_sim::models::{ModelSpec, generate_model};
use hubsync_bitbucket_sim::{FileOp, SimConfig, Simulator};
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{ModelStore, RepoRegistry};
use hubsync_tests::aws::TestAws;
use hubsync_tests::lambda::{Gateway, apigw_event, sqs_event};
use hubsync_tests::runtime_api::{Invocation, RuntimeApi};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WEBHOOK_SECRET: &str = "lambda-binary-webhook-secret";
const WAIT: Duration = Duration::from_secs(60);

/// A function binary started against its own Runtime API, its stdout lines collected.
struct Function {
    api: RuntimeApi,
    _process: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Function {
    async fn start(package: &str, binary: &str, env: &[(&str, &str)]) -> Self {
        let path = tokio::task::spawn_blocking({
            let (package, binary) = (package.to_owned(), binary.to_owned());
            move || hubsync_tests::cargo_bin(&package, &binary)
        })
        .await
        .unwrap();
        let api = RuntimeApi::start().await;
        let endpoint = hubsync_tests::moto::moto().endpoint.clone();
        let mut process = Command::new(path)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", binary)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{binary}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/24/[$LATEST]0123456789abcdef")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the function binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            api,
            _process: process,
            logs,
        }
    }

    async fn invoke(&self, event: Value) -> Value {
        match self.api.invoke(event, WAIT).await {
            Invocation::Response(answer) => answer,
            Invocation::Error(error) => panic!("the function failed: {error}"),
        }
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_goes_through_both_function_binaries_into_dynamodb_with_json_logs() {
    // Arrange: Bitbucket with a repository of models, the AWS resources, the two functions.
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let repo = sim.create_repo("DATA", "models").unwrap();
    let model = |seed, name: &str| {
        generate_model(&ModelSpec {
            seed,
            name: name.into(),
            app_target: "MONGODB".into(),
            target_bytes: 20_000,
            polyglot_refs: false,
            polyglot_model_path: None,
        })
    };
    let push = repo
        .commit(
            "main",
            &[
                FileOp::write("a/one.hck.json", model(1, "One")),
                FileOp::write("two.json", model(2, "Two")),
            ],
            "models",
        )
        .unwrap();
    let token = sim.token().expose_secret().to_owned();
    let secret = serde_json::json!({"baseUrl": sim.base_url(), "accessToken": token, "webhookSecret": WEBHOOK_SECRET});
    let aws = TestAws::new(&secret.to_string()).await;
    let id = RepoRef::parse("DATA/models").unwrap();
    let store = DynamoStore::new(aws.dynamodb(), aws.resources.table.clone());
    store.register(&id).await.unwrap();
    let r = &aws.resources;
    let webhook = Function::start(
        "hubsync-webhook-function",
        "webhook",
        &[("HUB_QUEUE_URL", &r.queue_url), ("HUB_SECRET_ID", &r.secret_id)],
    )
    .await;
    let sync = Function::start(
        "hubsync-sync-function",
        "sync",
        &[
            ("HUB_TABLE", &r.table),
            ("HUB_SECRET_ID", &r.secret_id),
            ("HUB_QUEUE_URL", &r.queue_url),
        ],
    )
    .await;

    // Act: the delivery, as API Gateway hands it to the webhook function...
    let delivery = sim.webhook(&repo, &push, Some(WEBHOOK_SECRET)).unwrap();
    let answer = webhook
        .invoke(apigw_event(Gateway::Http, "POST", &delivery.headers, &delivery.body))
        .await;
    // ...and the queued message, as the event source mapping hands it to the sync function.
    let messages = aws.receive_all(&r.queue_url).await;
    let batch = serde_json::to_value(sqs_event("arn:aws:sqs:us-east-1:123456789012:q.fifo", &messages)).unwrap();
    let synced = sync.invoke(batch).await;

    // Assert: accepted, queued once, synced with no failure, and the models are in DynamoDB.
    assert_eq!(answer["statusCode"], 202, "{answer}");
    assert_eq!(messages.len(), 1);
    assert_eq!(synced["batchItemFailures"], serde_json::json!([]), "{synced}");
    let head = push.to_hash().unwrap();
    assert_eq!(
        store.repo(&id).await.unwrap().unwrap().cursor.unwrap().commit.as_str(),
        head
    );
    let stored: Vec<String> = store
        .list_models(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(stored, ["a/one.hck.json", "two.json"]);

    for (name, function) in [("webhook", &webhook), ("sync", &sync)] {
        let logs = function.logs();
        assert!(!logs.is_empty(), "{name} logged");
        let mut metric_lines = 0;
        for line in &logs {
            let parsed: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {line}"));
            if let Some(metadata) = parsed.get("_aws") {
                // A CloudWatch Embedded Metric Format line: metrics without an API call.
                assert_eq!(
                    metadata["CloudWatchMetrics"][0]["Namespace"], "Hubsync",
                    "{name}: {line}"
                );
                metric_lines += 1;
            } else {
                assert!(parsed.get("level").is_some(), "{name}: {line}");
            }
            for secret in [token.as_str(), WEBHOOK_SECRET] {
                assert!(!line.contains(secret), "{name} logged a secret: {line}");
            }
        }
        assert!(
            metric_lines > 0,
            "{name} emitted its metrics as EMF lines:\n{}",
            logs.join("\n")
        );
        assert!(
            logs.iter()
                .any(|l| l.contains(&delivery.delivery_id) && l.contains("DATA/models")),
            "{name}: a log line carries the delivery id and the repository:\n{}",
            logs.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_without_its_configuration_stops_at_start_naming_the_variable() {
    let path = tokio::task::spawn_blocking(|| hubsync_tests::cargo_bin("hubsync-webhook-function", "webhook"))
        .await
        .unwrap();
    let api = RuntimeApi::start().await;
    let out = tokio::time::timeout(
        WAIT,
        Command::new(path)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_REGION", "us-east-1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the function stops")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("HUB_QUEUE_URL"), "{stderr}");
}
