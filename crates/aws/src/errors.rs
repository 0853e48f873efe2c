//! Turns AWS SDK errors into the domain's errors without flattening them: the SDK error stays
//! attached as the source, and whether a retry can help is decided from the service's error code.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use hubsync_core::ports::StoreError;

/// Error codes that no retry will fix.
const PERMANENT_CODES: &[&str] = &[
    "ValidationException",
    "AccessDeniedException",
    "ResourceNotFoundException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "ItemCollectionSizeLimitExceededException",
];

/// Whether an SDK error is worth retrying: throttling, 5xx, timeouts and network failures are.
pub fn is_retryable<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ConstructionFailure(_) => false,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => !e.err().code().is_some_and(|c| PERMANENT_CODES.contains(&c)),
        _ => true,
    }
}

/// A one-line description: the operation, the service's code and message.
pub fn describe<E: ProvideErrorMetadata, R>(operation: &str, err: &SdkError<E, R>) -> String {
    match err {
        SdkError::ServiceError(e) => format!(
            "{operation}: {}: {}",
            e.err().code().unwrap_or("unknown error"),
            e.err().message().unwrap_or("no message")
        ),
        other => format!("{operation}: {other}"),
    }
}

/// The store error for an SDK error. DynamoDB's `ValidationException` (the request itself is
/// refused: an item over 400 KB, a key over its size...) is [`StoreError::Refused`]; anything else
/// is [`StoreError::Backend`], retryable or not by its code.
pub fn store_error<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(e) = &err
        && e.err().code() == Some("ValidationException")
    {
        return StoreError::Refused {
            message: describe(operation, &err),
            source: Some(Box::new(err)),
        };
    }
    StoreError::Backend {
        message: describe(operation, &err),
        retryable: is_retryable(&err),
        source: Some(Box::new(err)),
    }
}
