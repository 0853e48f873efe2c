//! AWS SDK configuration pointed at the test's moto server, and fresh resources per test, so
//! tests sharing one emulator never see each other's queues, tables or secrets.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use hubsync_aws::provision::{Provisioned, provision};

use crate::moto::moto;

/// SDK configuration for `endpoint` with dummy credentials (never real ones).
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "hubsync-tests",
        ))
        .load()
        .await
}

/// SDK configuration for the shared moto server (started on first use).
pub async fn sdk_config() -> SdkConfig {
    let endpoint = tokio::task::spawn_blocking(|| moto().endpoint.clone())
        .await
        .expect("moto starts");
    sdk_config_for(&endpoint).await
}

/// A queue (with its dead-letter queue), a table and a secret, named for this test only.
pub struct TestAws {
    pub sdk: SdkConfig,
    pub resources: Provisioned,
}

impl TestAws {
    pub async fn new(secret_json: &str) -> Self {
        let sdk = sdk_config().await;
        let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let resources = provision(&sdk, &name, secret_json)
            .await
            .expect("moto accepts the resources");
        Self { sdk, resources }
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
    }

    /// Every message now visible on the queue (received, so hidden for the visibility timeout).
    pub async fn receive_all(&self, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs()
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("moto answers ReceiveMessage");
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }
}
