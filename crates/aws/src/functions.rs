//! What each Lambda function of `infra/template.yaml` gets from AWS, and its contract with the
//! template: the environment it reads and the SDK operations its adapters call. The deploy test
//! (`tests/deploy`) compares [`FUNCTIONS`] with the template's variables and policies; the unit
//! tests below check the contract against the code (the variables the constructors read, and the
//! SDK operations each adapter's source calls).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::adapters::Adapters;
use crate::config::{
    ENV_DELIVERY_RETENTION, ENV_LOG, ENV_MAX_MODEL_BYTES, ENV_QUEUE_URL, ENV_SECRET_ID, ENV_TABLE, ENV_WEBHOOK_MAX_AGE,
    EnvError, MissingEnv, process_env,
};
use crate::{DynamoDeliveryLog, DynamoStore, SecretsManagerSource, SqsPushQueue, SqsRetries};

/// One adapter's calls to AWS.
#[derive(Debug, Clone, Copy)]
pub struct AdapterContract {
    pub name: &'static str,
    /// The SDK operations it calls, as `service:Operation` (`sqs:SendMessage`); the deploy test
    /// maps them to IAM actions.
    pub operations: &'static [&'static str],
}

/// What a function needs from its deployment.
#[derive(Debug, Clone, Copy)]
pub struct FunctionContract {
    /// The binary the function is built from (the template's `BuildProperties.Binary`).
    pub binary: &'static str,
    /// The environment variables it reads.
    pub env: &'static [&'static str],
    /// The adapters it uses.
    pub adapters: &'static [AdapterContract],
}

impl FunctionContract {
    /// Every SDK operation its adapters call.
    pub fn operations(&self) -> BTreeSet<&'static str> {
        self.adapters
            .iter()
            .flat_map(|a| a.operations.iter().copied())
            .collect()
    }
}

/// The contracts of every function, for the deploy test.
pub const FUNCTIONS: &[FunctionContract] = &[WebhookAdapters::CONTRACT, SyncAdapters::CONTRACT];

/// The webhook function's adapters, and its one setting.
pub struct WebhookAdapters {
    pub queue: SqsPushQueue,
    /// `Err` when no secret is configured: the webhook then refuses every delivery (fail closed).
    pub secrets: Result<SecretsManagerSource, MissingEnv>,
    /// How old a delivery may be before it is refused as stale (`HUB_WEBHOOK_MAX_AGE`, default
    /// one hour; zero turns the check off).
    pub max_age: Duration,
    /// Where verified deliveries are recorded (the table `HUB_TABLE`, entries kept
    /// `HUB_DELIVERY_RETENTION`); `None` when no table is configured: nothing is recorded.
    pub deliveries: Option<DynamoDeliveryLog>,
}

impl WebhookAdapters {
    pub const CONTRACT: FunctionContract = FunctionContract {
        binary: "webhook",
        env: &[
            ENV_QUEUE_URL,
            ENV_SECRET_ID,
            ENV_WEBHOOK_MAX_AGE,
            ENV_TABLE,
            ENV_DELIVERY_RETENTION,
            ENV_LOG,
        ],
        adapters: &[
            // The webhook only records (`record_delivery`): one UpdateItem per delivery.
            AdapterContract {
                name: "DynamoDeliveryLog",
                operations: DynamoDeliveryLog::RECORD_OPERATIONS,
            },
            AdapterContract {
                name: "SqsPushQueue",
                operations: SqsPushQueue::OPERATIONS,
            },
            AdapterContract {
                name: "SecretsManagerSource",
                operations: SecretsManagerSource::OPERATIONS,
            },
        ],
    };

    /// Built once per cold start from the standard AWS environment and the process environment.
    pub async fn load() -> Result<Self, EnvError> {
        Adapters::load().await.webhook(&process_env)
    }
}

/// The sync function's adapters, and its one setting.
pub struct SyncAdapters {
    pub store: DynamoStore,
    pub secrets: SecretsManagerSource,
    /// Retries of the pushes it receives.
    pub retries: SqsRetries,
    /// The same queue, where the scheduled reconcile queues syncs.
    pub queue: SqsPushQueue,
    /// The largest file read as a model (`HUB_MAX_MODEL_BYTES`, default 32 MiB).
    pub max_model_bytes: u64,
}

impl SyncAdapters {
    pub const CONTRACT: FunctionContract = FunctionContract {
        binary: "sync",
        env: &[
            ENV_TABLE,
            ENV_SECRET_ID,
            ENV_QUEUE_URL,
            ENV_MAX_MODEL_BYTES,
            ENV_DELIVERY_RETENTION,
            ENV_LOG,
        ],
        adapters: &[
            AdapterContract {
                name: "DynamoStore",
                operations: DynamoStore::OPERATIONS,
            },
            AdapterContract {
                name: "DynamoDeliveryLog",
                operations: DynamoDeliveryLog::OPERATIONS,
            },
            AdapterContract {
                name: "SecretsManagerSource",
                operations: SecretsManagerSource::OPERATIONS,
            },
            AdapterContract {
                name: "SqsRetries",
                operations: SqsRetries::OPERATIONS,
            },
            AdapterContract {
                name: "SqsPushQueue",
                operations: SqsPushQueue::OPERATIONS,
            },
        ],
    };

    /// Built once per cold start from the standard AWS environment and the process environment.
    pub async fn load() -> Result<Self, EnvError> {
        Adapters::load().await.sync(&process_env)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;

    use aws_config::{BehaviorVersion, Region, SdkConfig};

    use super::*;
    use crate::config::Env;
    use crate::lambda_log_filter;

    fn adapters() -> Adapters {
        Adapters::from_sdk_config(
            SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        )
    }

    /// The variables `read` looks up when every variable is set (to a value each accepts).
    fn variables_read(read: impl FnOnce(Env<'_>)) -> BTreeSet<String> {
        let seen = RefCell::new(BTreeSet::new());
        let env = |name: &str| {
            seen.borrow_mut().insert(name.to_owned());
            Some("60".to_owned())
        };
        read(&env);
        seen.into_inner()
    }

    fn names(env: &[&str]) -> BTreeSet<String> {
        env.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn the_webhook_reads_exactly_the_variables_of_its_contract() {
        let read = variables_read(|env| {
            adapters().webhook(env).unwrap();
            lambda_log_filter(env);
        });

        assert_eq!(read, names(WebhookAdapters::CONTRACT.env));
    }

    #[test]
    fn the_sync_reads_exactly_the_variables_of_its_contract() {
        let read = variables_read(|env| {
            adapters().sync(env).unwrap();
            lambda_log_filter(env);
        });

        assert_eq!(read, names(SyncAdapters::CONTRACT.env));
    }

    #[test]
    fn a_webhook_without_a_secret_is_built_to_refuse_every_delivery() {
        let env = |name: &str| (name == ENV_QUEUE_URL).then(|| "http://127.0.0.1:1/queue".to_owned());

        let webhook = adapters().webhook(&env).unwrap();

        assert_eq!(webhook.secrets.err().map(|e| e.0), Some(ENV_SECRET_ID.to_owned()));
        assert_eq!(webhook.max_age, hubsync_core::webhook::DEFAULT_MAX_DELIVERY_AGE);
    }

    #[test]
    fn the_stale_delivery_window_of_the_webhook_defaults_to_an_hour_and_can_be_turned_off() {
        let unset = |name: &str| (name == ENV_QUEUE_URL).then(|| "q".to_owned());
        let off = |name: &str| (name != ENV_SECRET_ID && name != ENV_DELIVERY_RETENTION).then(|| "0".to_owned());
        let invalid = |name: &str| (name != ENV_SECRET_ID).then(|| "1h".to_owned());

        let default = adapters().webhook(&unset).unwrap().max_age;
        let zero = adapters().webhook(&off).unwrap().max_age;
        let refused = adapters().webhook(&invalid).err();

        assert_eq!(default, Duration::from_secs(3600));
        assert_eq!(zero, Duration::ZERO);
        assert!(
            matches!(&refused, Some(EnvError::Invalid(e)) if e.name == ENV_WEBHOOK_MAX_AGE),
            "{refused:?}"
        );
    }

    #[test]
    fn the_delivery_retention_defaults_to_30_days_and_a_wrong_one_is_named() {
        let unset = |name: &str| (name != ENV_DELIVERY_RETENTION).then(|| "60".to_owned());
        let set = |name: &str| Some(if name == ENV_DELIVERY_RETENTION { "7d" } else { "60" }.to_owned());
        let wrong = |name: &str| {
            Some(
                if name == ENV_DELIVERY_RETENTION {
                    "a month"
                } else {
                    "60"
                }
                .to_owned(),
            )
        };

        let webhook = adapters().webhook(&unset).unwrap();
        let sync = adapters().sync(&set).map(|_| ());
        let refused = adapters().webhook(&wrong).err();

        assert!(webhook.deliveries.is_some(), "HUB_TABLE is set");
        assert!(sync.is_ok());
        assert_eq!(
            crate::config::delivery_retention(None).unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            crate::config::delivery_retention(Some("7d")).unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert!(
            matches!(&refused, Some(EnvError::Invalid(e)) if e.name == ENV_DELIVERY_RETENTION),
            "{refused:?}"
        );
    }

    #[test]
    fn a_sync_without_one_of_its_variables_names_it() {
        for missing in [ENV_TABLE, ENV_SECRET_ID, ENV_QUEUE_URL] {
            let env = |name: &str| (name != missing).then(|| "60".to_owned());

            let err = adapters().sync(&env).err();

            assert!(
                matches!(&err, Some(EnvError::Missing(MissingEnv(name))) if name == missing),
                "{err:?}"
            );
        }
    }

    #[test]
    fn the_model_size_cap_of_the_sync_defaults_to_32_mib_and_is_read_from_its_variable() {
        let unset = |name: &str| (name != ENV_MAX_MODEL_BYTES).then(|| "30d".to_owned());
        let set = |name: &str| Some(if name == ENV_MAX_MODEL_BYTES { "1048576" } else { "30d" }.to_owned());
        let invalid = |name: &str| Some(if name == ENV_MAX_MODEL_BYTES { "0" } else { "30d" }.to_owned());

        let default = adapters().sync(&unset).unwrap().max_model_bytes;
        let one_mib = adapters().sync(&set).unwrap().max_model_bytes;
        let refused = adapters().sync(&invalid).err();

        assert_eq!(default, 32 * 1024 * 1024);
        assert_eq!(one_mib, 1_048_576);
        assert!(
            matches!(&refused, Some(EnvError::Invalid(e)) if e.name == ENV_MAX_MODEL_BYTES),
            "{refused:?}"
        );
    }

    /// The SDK operations (`prefix:Operation`) `source` calls on a `client` (`.client` followed,
    /// across whitespace, by `.operation(`), with the service `prefix`.
    fn client_calls(prefix: &str, source: &str) -> BTreeSet<String> {
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        source
            .match_indices(".client")
            .filter_map(|(at, m)| {
                let rest = &source[at + m.len()..];
                if rest.starts_with(ident) {
                    return None;
                }
                let rest = rest.trim_start().strip_prefix('.')?;
                let end = rest.find(|c: char| !ident(c))?;
                (end > 0 && rest[end..].starts_with('(')).then(|| &rest[..end])
            })
            .map(|op| {
                let pascal: String = op.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect();
                format!("{prefix}:{pascal}")
            })
            .collect()
    }

    /// The source of a module of this crate: its file, or every file of its directory.
    fn module_source(module: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(module);
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect();
            files.sort();
            files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect()
        } else {
            std::fs::read_to_string(path.with_extension("rs")).unwrap()
        }
    }

    #[test]
    fn the_call_reader_finds_client_calls_across_lines_and_nothing_else() {
        let source = "self\n    .client\n    .put_item()\n    .table_name(t);\n\
                      self.client.get_secret_value().send();\n\
                      let c = self.client_options.get();\nself.client;\n";

        let calls = client_calls("svc", source);

        assert_eq!(calls, names(&["svc:PutItem", "svc:GetSecretValue"]));
    }

    #[test]
    fn each_adapter_declares_exactly_the_operations_its_code_calls() {
        let adapters = [
            ("sqs", "sqs", SqsPushQueue::OPERATIONS),
            ("sqs", "sqs_retries", SqsRetries::OPERATIONS),
            ("sqs", "sqs_dead_letters", crate::SqsDeadLetters::OPERATIONS),
            ("secretsmanager", "secretsmanager", SecretsManagerSource::OPERATIONS),
            ("dynamodb", "dynamodb", DynamoStore::OPERATIONS),
            ("dynamodb", "delivery_log", DynamoDeliveryLog::OPERATIONS),
        ];
        for (prefix, module, declared) in adapters {
            let called = client_calls(prefix, &module_source(module));

            assert_eq!(called, names(declared), "{module}: operations called vs declared");
        }
    }
}
