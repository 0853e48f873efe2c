//! Builds a [`BitbucketClient`] from the current hub secret, sharing one connection pool, so the
//! sync picks up a rotated token or base URL without a restart.

use hubsync_core::secrets::HubSecret;
use hubsync_core::sync::GitHostConnector;

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

    fn connect(&self, secret: &HubSecret) -> Result<BitbucketClient, String> {
        BitbucketClient::with_http(
            self.http.clone(),
            &secret.base_url,
            secret.access_token.clone(),
            self.options.clone(),
        )
        .map_err(|e| e.to_string())
    }
}
