//! One way to print an error with its causes, for logs and for the reasons kept with a failure.
//!
//! Many errors say little at the top ("error sending request") and the useful part further down
//! their `source()` chain; `Display` alone loses it. The Bitbucket client, both queue consumers and
//! the simulator all print errors through [`error_chain`], so a cause reads the same everywhere.

use std::error::Error;

/// `error` followed by its sources, `: `-separated. A cause whose text the message already holds
/// (a wrapper that repeats its source) is not printed twice.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layer(text: &'static str, source: Option<Layer>) -> Layer {
        Layer {
            text,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        let error = layer(
            "sync failed",
            Some(layer("error sending request", Some(layer("connection refused", None)))),
        );
        let repeating = layer("connection refused", Some(layer("connection refused", None)));

        assert_eq!(
            error_chain(&error),
            "sync failed: error sending request: connection refused"
        );
        assert_eq!(error_chain(&repeating), "connection refused");
    }
}
