//! Builds a [`BitbucketClient`] from the current hub secret, sharing one connection pool, so the
//! sync picks up a rotated token or base URL without a restart.

use hubsync_core::ports::{ConnectError, GitHostConnector};
use hubsync_core::secrets::HubSecret;

use crate::{BitbucketClient, ClientBuildError, ClientOptions};

pub struct BitbucketConnector {
    http: reqwest::Client,
    options: ClientOptions,
}

impl BitbucketConnector {
    pub fn new(options: ClientOptions) -> Result<Self, ClientBuildError> {
        Ok(Self {
            http: BitbucketClient::http_client(&options)?,
            options,
        })
    }
}

impl GitHostConnector for BitbucketConnector {
    type Host = BitbucketClient;

    fn connect(&self, secret: &HubSecret) -> Result<BitbucketClient, ConnectError> {
        BitbucketClient::with_http(
            self.http.clone(),
            &secret.base_url,
            secret.access_token.clone(),
            self.options.clone(),
        )
        .map_err(ConnectError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_base_url_is_a_connect_error_that_keeps_its_cause_and_never_the_password() {
        let connector = BitbucketConnector::new(ClientOptions::default()).unwrap();
        let secret = HubSecret::from_json(
            r#"{"baseUrl":"http://jdoe:hunter2@127.0.0.1:9","accessToken":"t","webhookSecret":"w"}"#,
        )
        .unwrap();

        let Err(error) = connector.connect(&secret) else {
            panic!("the URL is refused")
        };

        assert!(error.to_string().contains("user name or password"), "{error}");
        assert!(!format!("{error} {error:?}").contains("hunter2"), "{error:?}");
        let cause = error
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<ClientBuildError>());
        assert!(matches!(cause, Some(ClientBuildError::BaseUrl(_))), "{cause:?}");
    }
}
