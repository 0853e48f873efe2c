//! Which backend the CLI talks to, from the environment (the same variables the Lambda functions
//! read, plus the local ones).
//!
//! | variable              | meaning |
//! |-----------------------|---------|
//! | `HUB_BACKEND`         | `aws` or `local`; default `aws` when `HUB_TABLE` is set, else `local` |
//! | `HUB_TABLE`           | AWS: the DynamoDB table |
//! | `HUB_SECRET_ID`       | AWS: the Secrets Manager secret |
//! | `HUB_QUEUE_URL`       | AWS: the SQS FIFO queue (`repos add`, `sync --queue` and `queue` send to it) |
//! | `HUB_DEAD_LETTER_QUEUE_URL` | AWS: its dead-letter queue (`queue status`, `dead-letters`, `redrive`) |
//! | `HUB_DB`              | local: the SQLite file (default `hubsync.db`) |
//! | `HUB_CONFIG`          | local: a JSON file shaped like the AWS secret: `{"baseUrl", "accessToken", "webhookSecret", "previousWebhookSecrets"}` |
//! | `HUB_BITBUCKET_URL`, `HUB_BITBUCKET_TOKEN`, `HUB_WEBHOOK_SECRET` | local: the same three values, overriding the file |

use std::path::PathBuf;

use anyhow::{Context, bail};
use hubsync_core::secrets::HubSecret;

pub const ENV_BACKEND: &str = "HUB_BACKEND";
pub const ENV_DB: &str = "HUB_DB";
pub const ENV_CONFIG: &str = "HUB_CONFIG";
pub const ENV_BITBUCKET_URL: &str = "HUB_BITBUCKET_URL";
pub const ENV_BITBUCKET_TOKEN: &str = "HUB_BITBUCKET_TOKEN";
pub const ENV_WEBHOOK_SECRET: &str = "HUB_WEBHOOK_SECRET";
pub const DEFAULT_DB: &str = "hubsync.db";

/// The local backend: one SQLite file and the Bitbucket settings.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub db_path: PathBuf,
    /// `None` when not configured: the webhook then refuses every delivery (fail closed).
    pub secret: Option<HubSecret>,
}

/// The AWS backend.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub table: String,
    pub secret_id: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Backend {
    Aws(AwsConfig),
    Local(LocalConfig),
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl Backend {
    pub fn from_env() -> anyhow::Result<Self> {
        let table = env(hubsync_aws::config::ENV_TABLE);
        match env(ENV_BACKEND).as_deref() {
            Some("aws") | None if table.is_some() => Ok(Self::Aws(AwsConfig {
                table: table.context("HUB_BACKEND=aws needs HUB_TABLE")?,
                secret_id: env(hubsync_aws::config::ENV_SECRET_ID),
            })),
            Some("aws") => bail!("HUB_BACKEND=aws needs HUB_TABLE (the DynamoDB table)"),
            Some("local") | None => Ok(Self::Local(LocalConfig::from_env()?)),
            Some(other) => bail!("HUB_BACKEND must be aws or local, not {other:?}"),
        }
    }
}

impl LocalConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let db_path = env(ENV_DB).map_or_else(|| PathBuf::from(DEFAULT_DB), PathBuf::from);
        let mut fields = serde_json::Map::new();
        if let Some(path) = env(ENV_CONFIG) {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {ENV_CONFIG} file {path}"))?;
            match serde_json::from_str(&text) {
                Ok(serde_json::Value::Object(map)) => fields = map,
                _ => bail!("{path} must hold a JSON object with baseUrl, accessToken and webhookSecret"),
            }
        }
        for (var, key) in [
            (ENV_BITBUCKET_URL, "baseUrl"),
            (ENV_BITBUCKET_TOKEN, "accessToken"),
            (ENV_WEBHOOK_SECRET, "webhookSecret"),
        ] {
            if let Some(value) = env(var) {
                fields.insert(key.into(), value.into());
            }
        }
        let secret = if fields.is_empty() {
            None
        } else {
            Some(
                HubSecret::from_json(&serde_json::Value::Object(fields).to_string()).map_err(|e| {
                    anyhow::anyhow!(
                        "{e} (from {ENV_CONFIG} / {ENV_BITBUCKET_URL} / {ENV_BITBUCKET_TOKEN} / {ENV_WEBHOOK_SECRET})"
                    )
                })?,
            )
        };
        Ok(Self { db_path, secret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_configuration_prints_no_secret() {
        let local = LocalConfig {
            db_path: PathBuf::from("hub.db"),
            secret: Some(
                HubSecret::from_json(
                    r#"{"baseUrl":"http://127.0.0.1:7990","accessToken":"tok-SECRET-123","webhookSecret":"hook-SECRET-456","previousWebhookSecrets":["old-SECRET-789"]}"#,
                )
                .unwrap(),
            ),
        };

        let printed = format!("{local:?} {:?}", Backend::Local(local.clone()));

        assert!(!printed.contains("SECRET-"), "{printed}");
        assert!(printed.contains("hub.db"), "{printed}");
    }
}
