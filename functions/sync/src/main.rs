//! The sync Lambda (SQS event source with `ReportBatchItemFailures`, and the reconcile schedule,
//! which queues syncs on the same queue). Its adapters and settings are built once per cold start
//! by `hubsync-aws` (which reads the environment); the hub secret is read while the first event is
//! fetched, then cached for five minutes. See the README's Configuration section.

// The handler's future nests the sync and the reconcile over generic adapters; computing its
// layout goes deeper than the default limit of 128.
#![recursion_limit = "256"]

use hubsync_aws::SyncAdapters;
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_core::deadline::{Clock, Deadline};
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL, read_ahead};
use hubsync_core::sync::{SyncOptions, SyncWorker};
use hubsync_sync_function::{SyncEvent, SyncResponse};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // A batch of large models: each one's memory goes back to the OS once it is written.
    hubsync_bitbucket::give_large_bodies_back_to_the_os();
    hubsync_aws::init_lambda_logs();
    let SyncAdapters {
        store,
        secrets,
        retries,
        queue,
        max_model_bytes,
    } = SyncAdapters::load().await?;
    let mut options = SyncOptions::with_max_model_bytes(max_model_bytes);
    // "held by hub-sync log stream ...": where a person finds the sync holding a lease.
    if let Some(holder) = hubsync_aws::lambda_lease_holder(&hubsync_aws::config::process_env) {
        options.holder = holder;
    }
    let worker = SyncWorker {
        store,
        secrets: CachedSecretSource::new(secrets, DEFAULT_SECRET_TTL),
        // Its HTTP client (and the system's trust roots) is built at the first Bitbucket request.
        connector: BitbucketConnector::new(ClientOptions::default())?,
        // One fetch budget (files and their bytes) for the whole invocation: every repository of a batch.
        options,
    };
    let (worker, retries, queue) = (&worker, &retries, &queue);
    // The hub secret, which every sync reads first, is read while the runtime fetches the first event.
    let run = lambda_runtime::run(service_fn(move |event: LambdaEvent<SyncEvent>| async move {
        // The metrics name the function (the same for every invocation of this process).
        hubsync_aws::emf::enable(&event.context.env_config.function_name);
        // A sync that cannot finish before the invocation's deadline continues in the next one.
        let deadline = Deadline::from_epoch_millis(event.context.deadline, Clock::system());
        let (response, to_retry) =
            hubsync_sync_function::handle_within(worker, queue, event.payload, Some(deadline)).await?;
        for retry in &to_retry {
            // If this fails, the message simply comes back after the queue's visibility timeout.
            if let Err(e) = retries.retry_in(&retry.receipt_handle, retry.delay).await {
                tracing::warn!(message_id = %retry.message_id, error = %e, "could not schedule the retry");
            }
        }
        Ok::<SyncResponse, Error>(response)
    }));
    let ((), ran) = tokio::join!(read_ahead(&worker.secrets), run);
    ran
}
