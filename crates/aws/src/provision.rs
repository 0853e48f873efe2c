//! Creates the queue, table and secret in an emulator (`hubsync init` with `AWS_ENDPOINT_URL`, and
//! the test harness). In AWS the template in `infra/` creates them; this mirrors its settings.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::delivery_log::{BY_REPO_INDEX, BY_TIME_INDEX};
use crate::errors::describe;

/// What was created.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub table: String,
    pub secret_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProvisionError(pub String);

/// Creates (or reuses) a FIFO queue named `{name}.fifo` with a dead-letter queue, a table named
/// `name`, and a secret named `name` holding `secret_json`.
pub async fn provision(
    sdk: &aws_config::SdkConfig,
    name: &str,
    secret_json: &str,
) -> Result<Provisioned, ProvisionError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);

    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| ProvisionError(describe("SQS CreateQueue (dead-letter)", &e)))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| ProvisionError(describe("SQS GetQueueAttributes", &e)))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(QueueAttributeName::VisibilityTimeout, "720")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": hubsync_core::consumer::DEFAULT_MAX_ATTEMPTS,
            })
            .to_string(),
        )
        .send()
        .await
        .map_err(|e| ProvisionError(describe("SQS CreateQueue", &e)))?
        .queue_url
        .unwrap_or_default();

    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let created = dynamo
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash).map_err(|e| ProvisionError(e.to_string()))?)
        .key_schema(key("sk", KeyType::Range).map_err(|e| ProvisionError(e.to_string()))?)
        .attribute_definitions(attr("pk").map_err(|e| ProvisionError(e.to_string()))?)
        .attribute_definitions(attr("sk").map_err(|e| ProvisionError(e.to_string()))?)
        .attribute_definitions(attr("deliveryLog").map_err(|e| ProvisionError(e.to_string()))?)
        .attribute_definitions(attr("deliveryRepo").map_err(|e| ProvisionError(e.to_string()))?)
        .attribute_definitions(attr("deliveryAt").map_err(|e| ProvisionError(e.to_string()))?)
        .global_secondary_indexes(delivery_index(BY_TIME_INDEX, "deliveryLog")?)
        .global_secondary_indexes(delivery_index(BY_REPO_INDEX, "deliveryRepo")?)
        .send()
        .await;
    match created {
        Ok(_) => {
            let ttl = TimeToLiveSpecification::builder()
                .attribute_name("expiresAt")
                .enabled(true)
                .build()
                .map_err(|e| ProvisionError(e.to_string()))?;
            dynamo
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(ttl)
                .send()
                .await
                .map_err(|e| ProvisionError(describe("DynamoDB UpdateTimeToLive", &e)))?;
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(ProvisionError(describe("DynamoDB CreateTable", &e))),
    }

    let secret_id = match secrets
        .create_secret()
        .name(name)
        .secret_string(secret_json)
        .send()
        .await
    {
        Ok(out) => out.arn.unwrap_or_else(|| name.to_owned()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_exists_exception()) => {
            secrets
                .put_secret_value()
                .secret_id(name)
                .secret_string(secret_json)
                .send()
                .await
                .map_err(|e| ProvisionError(describe("Secrets Manager PutSecretValue", &e)))?;
            name.to_owned()
        }
        Err(e) => return Err(ProvisionError(describe("Secrets Manager CreateSecret", &e))),
    };

    Ok(Provisioned {
        queue_url,
        dead_letter_queue_url: dlq_url,
        table: name.to_owned(),
        secret_id,
    })
}

/// A delivery log index (see [`crate::delivery_log`]): `partition`, sorted by `deliveryAt`, every
/// attribute projected (entries are small).
fn delivery_index(name: &str, partition: &str) -> Result<GlobalSecondaryIndex, ProvisionError> {
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| ProvisionError(e.to_string()))
    };
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(partition, KeyType::Hash)?)
        .key_schema(key("deliveryAt", KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(|e| ProvisionError(e.to_string()))
}
