//! Errors: [`ClientBuildError`] when a client cannot be made, and the text that goes into the
//! domain's `GitHostError` when a request fails. Whatever the server or the HTTP stack says is
//! passed through [`redact`] first, so the access token never appears in a message.

use crate::json::ErrorBody;

/// Why a [`BitbucketClient`](crate::BitbucketClient) could not be built. No variant repeats the
/// base URL (it might carry a password) or the token.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("the Bitbucket base URL is not valid: {0}")]
    BaseUrl(String),
    #[error("the access token cannot be sent in an HTTP header (it is empty or holds control characters)")]
    Token,
    #[error("invalid client option: {0}")]
    Option(String),
    #[error("the HTTP client could not be built")]
    Http(#[source] reqwest::Error),
}

/// How much of an error body that is not Bitbucket's JSON (a proxy's HTML page) is quoted.
const SNIPPET_CHARS: usize = 200;

/// What the server said in an error answer: its `errors[].message` texts, or the start of a body
/// that is not Bitbucket's JSON, or nothing.
pub(crate) fn describe_body(body: &[u8]) -> String {
    let messages = ErrorBody::parse(body).messages();
    if !messages.is_empty() {
        return messages;
    }
    let text = String::from_utf8_lossy(body);
    let mut snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = snippet.char_indices().nth(SNIPPET_CHARS) {
        snippet.truncate(cut);
        snippet.push('…');
    }
    snippet
}

/// `error` and its sources, `: `-separated (reqwest's own message is often only "error sending
/// request"; the cause is further down): the domain's one formatter.
pub(crate) use hubsync_core::error_chain as chain;

/// Replaces every occurrence of `secret` in `text`. A server has no reason to echo the token, but
/// a message that reaches a log must not depend on that.
pub(crate) fn redact(text: String, secret: &str) -> String {
    if secret.is_empty() || !text.contains(secret) {
        text
    } else {
        text.replace(secret, "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_preferred_over_the_raw_body() {
        let body = br#"{"errors":[{"context":null,"message":"Authentication failed.","exceptionName":"com.atlassian.bitbucket.AuthorisationException"}]}"#;
        assert_eq!(describe_body(body), "Authentication failed.");
    }

    #[test]
    fn other_bodies_are_quoted_briefly_on_one_line() {
        assert_eq!(
            describe_body(b"<html>\n  <h1>502 Bad Gateway</h1>\n</html>"),
            "<html> <h1>502 Bad Gateway</h1> </html>"
        );
        assert_eq!(describe_body(b""), "");
        let long = "é".repeat(500);
        assert_eq!(describe_body(long.as_bytes()).chars().count(), SNIPPET_CHARS + 1);
    }

    #[test]
    fn the_secret_is_redacted_wherever_it_appears() {
        assert_eq!(redact("a tok b tok".into(), "tok"), "a [redacted] b [redacted]");
        assert_eq!(redact("nothing".into(), ""), "nothing");
    }
}
