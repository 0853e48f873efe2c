//! The pipeline under test, in its two deployments behind one trait, so every scenario runs
//! against both with the same code:
//!
//! - [`AwsPipeline`]: webhook function (driven with API Gateway HTTP API events) → SQS FIFO →
//!   sync function (driven with SQS batches, as the event source mapping would) → DynamoDB, with
//!   the secret in Secrets Manager; all AWS services served by moto.
//! - [`LocalPipeline`]: `hubsync serve` over real HTTP on loopback, its SQLite queue and workers.
//!
//! Both read from the same Bitbucket Data Center simulator, backed by real git repositories.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hubsync_aws::{DynamoStore, SecretsManagerSource, SqsPushQueue, SqsRetries};
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_bitbucket_sim::{SimConfig, Simulator, WebhookDelivery};
use hubsync_cli::config::LocalConfig;
use hubsync_cli::serve::worker::SliceLength;
use hubsync_cli::serve::{RunningServer, ServeArgs};
use hubsync_core::consumer::ConsumerPolicy;
use hubsync_core::deadline::{Clock, Deadline};
use hubsync_core::ports::{DeliveryLog, ModelStore, RepoRegistry};
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL, HubSecret};
use hubsync_core::sync::{DEFAULT_FETCH_CONCURRENCY, FetchBudget, SyncOptions, SyncWorker};
use hubsync_core::webhook::WebhookHandler;
use hubsync_sqlite::SqliteHub;
use hubsync_sync_function::{SyncEvent, SyncResponse};
use hubsync_tests::aws::TestAws;
use hubsync_tests::lambda::{Gateway, apigw_event, request_from_event, sqs_event};
use secrecy::ExposeSecret;

pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";

/// How the pipeline is set up for one scenario.
#[derive(Clone)]
pub struct Setup {
    /// `page.max.changes` of the simulated server (and what the client expects).
    pub max_changes: u32,
    /// The token the hub is configured with; `None` = the simulator's own (the right one).
    pub token: Option<String>,
    /// Local backend: deliveries before a push is dead-lettered (the AWS queue's redrive policy
    /// says 5). Permanent failures back off for long locally, so tests of them use 1.
    pub local_max_attempts: u32,
    /// Each sync gets this long (AWS: the invocation's deadline; local: `--slice`), on a clock
    /// that moves [`TICK`] at every reading ([`ticking_clock`]) rather than with the machine's
    /// speed; `None`: no deadline.
    pub slice: Option<Duration>,
}

/// How far the sliced syncs' clock moves at each reading: the sync reads it before starting each
/// file, so a 2-second slice stops after about 32 files (80 % of 2 s in 50 ms steps).
pub const TICK: Duration = Duration::from_millis(50);

/// A clock that moves [`TICK`] every time it is read.
pub fn ticking_clock() -> Clock {
    let ticks = Arc::new(AtomicU32::new(0));
    let start = chrono::Utc::now();
    let tick = chrono::TimeDelta::from_std(TICK).expect("a small duration");
    Clock::new(move || start + tick * ticks.fetch_add(1, Ordering::SeqCst) as i32)
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            max_changes: 1000,
            token: None,
            local_max_attempts: 5,
            slice: None,
        }
    }
}

/// Tiny backoffs, so retried requests do not slow the suite down.
fn client_options(setup: &Setup) -> ClientOptions {
    ClientOptions {
        max_changes: setup.max_changes as usize,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        ..ClientOptions::default()
    }
}

async fn simulator(setup: &Setup) -> Simulator {
    Simulator::start(SimConfig {
        // Small pages, so every paged resource is followed across pages.
        max_page_size: 3,
        max_changes: setup.max_changes,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

fn secret_json(sim: &Simulator, setup: &Setup) -> String {
    let token = setup
        .token
        .clone()
        .unwrap_or_else(|| sim.token().expose_secret().to_owned());
    serde_json::json!({"baseUrl": sim.base_url(), "accessToken": token, "webhookSecret": WEBHOOK_SECRET}).to_string()
}

pub trait Pipeline: Sized {
    type Store: RepoRegistry + ModelStore + DeliveryLog;
    const NAME: &'static str;

    async fn start(setup: Setup) -> Self;
    fn sim(&self) -> &Simulator;
    fn store(&self) -> &Self::Store;
    /// Delivers a webhook to the pipeline's endpoint; the HTTP status it answered.
    async fn deliver(&self, delivery: &WebhookDelivery) -> u16;
    /// Lets the sync take every queued push (retrying failures as the platform would) until the
    /// queue is empty; returns how many pushes ended in the dead-letter queue so far.
    async fn drain(&self) -> usize;
    /// Runs the scheduled reconcile once, as the platform's schedule would (AWS: the sync function
    /// invoked with an EventBridge scheduled event; local: the `--reconcile-every` task); returns
    /// how many repositories it queued a sync for.
    async fn reconcile(&self) -> usize;
    /// Environment for running the `hubsync` binary against this pipeline's store.
    fn cli_env(&self) -> Vec<(String, String)>;
}

type AwsWorker = SyncWorker<DynamoStore, CachedSecretSource<SecretsManagerSource>, BitbucketConnector>;

pub struct AwsPipeline {
    sim: Simulator,
    aws: TestAws,
    webhook: WebhookHandler<SqsPushQueue, CachedSecretSource<SecretsManagerSource>, DynamoStore>,
    worker: AwsWorker,
    retries: SqsRetries,
    queue: SqsPushQueue,
    /// Each invocation's time and the clock it is measured on ([`Setup::slice`]).
    slice: Option<(Duration, Clock)>,
}

impl AwsPipeline {
    /// The moto resources (queue, dead-letter queue, table, secret) of this pipeline.
    pub fn aws(&self) -> &TestAws {
        &self.aws
    }
}

impl Pipeline for AwsPipeline {
    type Store = DynamoStore;
    const NAME: &'static str = "aws";

    async fn start(setup: Setup) -> Self {
        let sim = simulator(&setup).await;
        let aws = TestAws::new(&secret_json(&sim, &setup)).await;
        let secrets = || {
            CachedSecretSource::new(
                SecretsManagerSource::new(aws.secrets(), aws.resources.secret_id.clone()),
                DEFAULT_SECRET_TTL,
            )
        };
        let webhook = WebhookHandler::new(SqsPushQueue::new(aws.sqs(), aws.resources.queue_url.clone()), secrets())
            .with_delivery_log(DynamoStore::new(aws.dynamodb(), aws.resources.table.clone()));
        let worker = SyncWorker {
            store: DynamoStore::new(aws.dynamodb(), aws.resources.table.clone()),
            secrets: secrets(),
            connector: BitbucketConnector::new(client_options(&setup)).expect("client"),
            options: SyncOptions {
                // moto's TransactWriteItems is not thread-safe (it deep-copies the tables while
                // another request changes them, and answers 500): the many writes of the sliced
                // scenarios are made one at a time.
                fetch: FetchBudget::new(if setup.slice.is_some() {
                    1
                } else {
                    DEFAULT_FETCH_CONCURRENCY
                }),
                ..SyncOptions::default()
            },
        };
        let retries = SqsRetries::new(aws.sqs(), aws.resources.queue_url.clone());
        let queue = SqsPushQueue::new(aws.sqs(), aws.resources.queue_url.clone());
        Self {
            sim,
            aws,
            webhook,
            worker,
            retries,
            queue,
            slice: setup.slice.map(|length| (length, ticking_clock())),
        }
    }

    fn sim(&self) -> &Simulator {
        &self.sim
    }

    fn store(&self) -> &DynamoStore {
        &self.worker.store
    }

    async fn deliver(&self, delivery: &WebhookDelivery) -> u16 {
        let event = apigw_event(Gateway::Http, "POST", &delivery.headers, &delivery.body);
        let response = hubsync_webhook_function::handle(&self.webhook, request_from_event(&event))
            .await
            .expect("infallible");
        response.status().as_u16()
    }

    async fn drain(&self) -> usize {
        let sqs = self.aws.sqs();
        let queue = &self.aws.resources.queue_url;
        let arn = "arn:aws:sqs:us-east-1:123456789012:e2e.fifo";
        // Bounded: at most this many batches (the dead-letter queue takes a message after 5 receives).
        for _ in 0..200 {
            let out = sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("ReceiveMessage");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            let event = sqs_event(arn, &messages);
            let result = match &self.slice {
                // Each batch is one invocation, with its own deadline.
                Some((length, clock)) => {
                    let deadline = Deadline::after(*length, clock.clone());
                    hubsync_sync_function::process_batch_within(
                        &self.worker,
                        &ConsumerPolicy::DEFAULT,
                        event,
                        &deadline,
                        &self.queue,
                    )
                    .await
                }
                None => hubsync_sync_function::process_batch(&self.worker, event).await,
            };
            let failed: HashSet<&str> = result
                .response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            for m in &messages {
                if !failed.contains(m.message_id().unwrap_or_default()) {
                    let receipt = m.receipt_handle().unwrap_or_default();
                    sqs.delete_message()
                        .queue_url(queue)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .expect("DeleteMessage");
                }
            }
            for retry in &result.retries {
                // Only the last attempt is made visible at once (its next receive passes
                // maxReceiveCount and SQS moves it to the dead-letter queue).
                let receives: u32 = messages
                    .iter()
                    .find(|m| m.receipt_handle() == Some(retry.receipt_handle.as_str()))
                    .and_then(|m| m.attributes.as_ref())
                    .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if receives < hubsync_core::consumer::DEFAULT_MAX_ATTEMPTS {
                    assert!(retry.delay > Duration::ZERO, "a failed push is not retried at once");
                }
                // As if the retry delay had passed: the message is visible again now.
                self.retries
                    .retry_in(&retry.receipt_handle, Duration::ZERO)
                    .await
                    .expect("ChangeMessageVisibility");
            }
        }
        // Counted by receiving them, then made visible again, so the dead-letter queue stays
        // readable (`hubsync queue dead-letters`).
        let dead = self.aws.receive_all(&self.aws.resources.dead_letter_queue_url).await;
        for m in &dead {
            sqs.change_message_visibility()
                .queue_url(&self.aws.resources.dead_letter_queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .visibility_timeout(0)
                .send()
                .await
                .expect("ChangeMessageVisibility");
        }
        dead.len()
    }

    async fn reconcile(&self) -> usize {
        // What EventBridge sends on a schedule.
        let event: SyncEvent = serde_json::from_value(serde_json::json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-28T12:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/hub-ReconcileRule"],
            "detail": {}
        }))
        .expect("a scheduled event");
        let (response, retries) = hubsync_sync_function::handle(&self.worker, &self.queue, event)
            .await
            .expect("the reconcile runs");
        assert!(retries.is_empty());
        match response {
            SyncResponse::Reconciled(summary) => {
                assert_eq!(summary.failed, 0, "{summary:?}");
                summary.queued
            }
            SyncResponse::Batch(batch) => panic!("a scheduled event handled as a batch: {batch:?}"),
        }
    }

    fn cli_env(&self) -> Vec<(String, String)> {
        vec![
            ("HUB_BACKEND".into(), "aws".into()),
            ("HUB_TABLE".into(), self.aws.resources.table.clone()),
            ("HUB_SECRET_ID".into(), self.aws.resources.secret_id.clone()),
            ("HUB_QUEUE_URL".into(), self.aws.resources.queue_url.clone()),
            (
                "HUB_DEAD_LETTER_QUEUE_URL".into(),
                self.aws.resources.dead_letter_queue_url.clone(),
            ),
            ("AWS_ENDPOINT_URL".into(), hubsync_tests::moto::moto().endpoint.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ]
    }
}

pub struct LocalPipeline {
    sim: Simulator,
    server: RunningServer,
    db: tempfile::TempDir,
}

impl Pipeline for LocalPipeline {
    type Store = SqliteHub;
    const NAME: &'static str = "local";

    async fn start(setup: Setup) -> Self {
        let sim = simulator(&setup).await;
        let db = tempfile::tempdir().expect("a temporary folder");
        let local = LocalConfig {
            db_path: db.path().join("hub.db"),
            secret: Some(HubSecret::from_json(&secret_json(&sim, &setup)).expect("a valid secret")),
        };
        let args = ServeArgs {
            listen: ([127, 0, 0, 1], 0).into(),
            max_attempts: setup.local_max_attempts,
            slice: SliceLength(setup.slice),
            slice_clock: setup.slice.map(|_| ticking_clock()),
            ..ServeArgs::default()
        };
        let connector = BitbucketConnector::new(client_options(&setup)).expect("client");
        let server = hubsync_cli::serve::start_with(args, local, connector)
            .await
            .expect("hubsync serve starts");
        Self { sim, server, db }
    }

    fn sim(&self) -> &Simulator {
        &self.sim
    }

    fn store(&self) -> &SqliteHub {
        self.server.hub()
    }

    async fn deliver(&self, delivery: &WebhookDelivery) -> u16 {
        delivery
            .send(&self.server.webhook_url())
            .await
            .expect("the server answers")
            .status
    }

    async fn drain(&self) -> usize {
        // Wait for the workers to empty the queue: a condition, checked until a deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let stats = self.server.hub().queue_stats().await.expect("queue stats");
            if stats.is_drained() {
                return stats.dead_letters as usize;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the local queue did not drain: {stats:?}"
            );
            tokio::select! {
                _ = self.server.hub().notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    async fn reconcile(&self) -> usize {
        let report = self.server.reconcile_now().await.expect("the reconcile runs");
        assert!(report.failed.is_empty(), "{report:?}");
        report.queued.len()
    }

    fn cli_env(&self) -> Vec<(String, String)> {
        vec![
            ("HUB_BACKEND".into(), "local".into()),
            ("HUB_DB".into(), self.db.path().join("hub.db").display().to_string()),
            ("HUB_BITBUCKET_URL".into(), self.sim.base_url().to_owned()),
            (
                "HUB_BITBUCKET_TOKEN".into(),
                self.sim.token().expose_secret().to_owned(),
            ),
            ("HUB_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
        ]
    }
}
