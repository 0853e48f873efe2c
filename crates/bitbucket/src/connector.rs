//! Builds a [`BitbucketClient`] from the current hub secret, sharing one connection pool, so the
//! sync picks up a rotated token or base URL without a restart. The pool's `reqwest::Client` is
//! built at the first Bitbucket request, not with the connector: a cold start whose first
//! invocation calls no Bitbucket (a push to a repository that is not registered) answers without
//! reading the system's trust roots. The client is the one [`BitbucketClient::http_client`]
//! builds, so what it trusts (the system's roots, `SSL_CERT_FILE`, `SSL_CERT_DIR`) is unchanged.

use hubsync_core::ports::{ConnectError, GitHostConnector};
use hubsync_core::secrets::HubSecret;

use crate::client::SharedHttp;
use crate::{BitbucketClient, ClientBuildError, ClientOptions};

pub struct BitbucketConnector {
    http: SharedHttp,
    options: ClientOptions,
}

impl BitbucketConnector {
    /// Checks `options` now; the HTTP client is built at the first request.
    pub fn new(options: ClientOptions) -> Result<Self, ClientBuildError> {
        options.validate()?;
        Ok(Self {
            http: SharedHttp::on_first_use(options.clone()),
            options,
        })
    }
}

impl GitHostConnector for BitbucketConnector {
    type Host = BitbucketClient;

    fn connect(&self, secret: &HubSecret) -> Result<BitbucketClient, ConnectError> {
        BitbucketClient::with_shared_http(
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

    #[test]
    fn invalid_options_are_refused_when_the_connector_is_made() {
        let options = ClientOptions {
            max_attempts: 0,
            ..ClientOptions::default()
        };

        let result = BitbucketConnector::new(options);

        assert!(matches!(result, Err(ClientBuildError::Option(_))));
    }

    #[test]
    fn the_http_client_is_built_at_the_first_request_and_shared_by_every_client_connected() {
        let connector = BitbucketConnector::new(ClientOptions::default()).unwrap();
        let secret =
            HubSecret::from_json(r#"{"baseUrl":"http://127.0.0.1:9","accessToken":"t","webhookSecret":"w"}"#).unwrap();
        let first = connector.connect(&secret).unwrap();
        let second = connector.connect(&secret).unwrap();
        assert!(!connector.http.is_built(), "connecting builds no HTTP client");

        first.http().unwrap();

        assert!(connector.http.is_built());
        assert!(second.http_is_built(), "the clients share one HTTP client");
    }
}
