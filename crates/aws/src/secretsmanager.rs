//! The hub secret from AWS Secrets Manager. Wrap it in
//! [`CachedSecretSource`](hubsync_core::secrets::CachedSecretSource) so the secret is read once per
//! cold start and then every five minutes, never per request.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use hubsync_core::ports::{SecretError, SecretSource};
use std::sync::Arc;

use hubsync_core::secrets::HubSecret;

use crate::errors::describe;

pub struct SecretsManagerSource {
    client: Client,
    secret_id: String,
}

impl SecretsManagerSource {
    /// The SDK operations this adapter calls, as `service:Operation` (checked against the code in
    /// `functions`' tests).
    pub const OPERATIONS: &'static [&'static str] = &["secretsmanager:GetSecretValue"];

    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

impl SecretSource for SecretsManagerSource {
    async fn hub_secret(&self) -> Result<Arc<HubSecret>, SecretError> {
        let out = match self.client.get_secret_value().secret_id(&self.secret_id).send().await {
            Ok(out) => out,
            Err(e) => {
                let code = e
                    .as_service_error()
                    .and_then(|s| s.code())
                    .unwrap_or_default()
                    .to_owned();
                return Err(match code.as_str() {
                    "ResourceNotFoundException" => {
                        SecretError::Missing(format!("secret {} does not exist", self.secret_id))
                    }
                    // A secret created without a value yet: the administrator has not set it.
                    "InvalidRequestException" => SecretError::Missing(format!(
                        "secret {} has no value yet; set it as described in the README",
                        self.secret_id
                    )),
                    _ => SecretError::Unavailable {
                        message: describe("Secrets Manager GetSecretValue", &e),
                        source: Some(Box::new(e)),
                    },
                });
            }
        };
        let text = out.secret_string().ok_or_else(|| {
            SecretError::Invalid(format!(
                "secret {} holds binary data, not the JSON object",
                self.secret_id
            ))
        })?;
        HubSecret::from_json(text).map(Arc::new)
    }
}
