//! Error classes: the one decision every failure needs, retry or keep aside.
//!
//! A transient error (throttling, timeouts, 5xx) fails only its own record so SQS retries it; a permanent error
//! (bad input, a schema violation, a 4xx) is never retried blindly: the runner keeps the message in the
//! dead-letter queue and raises an incident and an alert.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

/// Boxed error for sources we only display.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether retrying the same input can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Retry: the world may be different next time.
    Transient,
    /// Do not retry: keep the input and tell a human.
    Permanent,
}

impl Class {
    /// Lowercase name used in logs, metrics and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Transient => "transient",
            Class::Permanent => "permanent",
        }
    }

    /// Classifies an AWS SDK error: timeouts, dispatch failures, throttling codes and 5xx retry; construction
    /// failures and other service errors (validation, access denied, not found) do not.
    pub fn of_sdk<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Class {
        match err {
            SdkError::ConstructionFailure(_) => Class::Permanent,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Class::Transient,
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status();
                if status.is_server_error() || status.as_u16() == 429 {
                    return Class::Transient;
                }
                match ctx.err().code() {
                    Some(code) if THROTTLING_CODES.contains(&code) || TRANSIENT_CODES.contains(&code) => {
                        Class::Transient
                    }
                    _ => Class::Permanent,
                }
            }
            _ => Class::Transient,
        }
    }
}

/// Service error codes that mean "slow down", as the SDK's own retry classifier lists them.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Codes that are not throttling but still pass with time.
const TRANSIENT_CODES: &[&str] = &["RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable"];

/// Every error a handler returns can say whether it is worth retrying and name itself with a fixed code.
pub trait Classify: std::error::Error + Send + Sync + 'static {
    /// Retry or keep aside.
    fn class(&self) -> Class;
    /// A short fixed snake_case code for logs, metrics and incidents (never built from input).
    fn code(&self) -> &'static str;
}

/// A failed AWS call, classified once where it happens.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{op} failed ({code}): {detail}")]
pub struct AwsError {
    /// The operation, e.g. `sqs:SendMessage`.
    pub op: &'static str,
    /// Retry or not.
    pub class: Class,
    /// The service error code, or the SDK failure kind.
    pub code: String,
    /// The SDK's own description, with its causes.
    pub detail: String,
}

impl AwsError {
    /// Classifies and describes an SDK error.
    pub fn new<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let class = Class::of_sdk(&err);
        let code = match &err {
            SdkError::ServiceError(ctx) => ctx.err().code().unwrap_or("ServiceError").to_owned(),
            SdkError::TimeoutError(_) => "Timeout".to_owned(),
            SdkError::DispatchFailure(_) => "DispatchFailure".to_owned(),
            SdkError::ResponseError(_) => "ResponseError".to_owned(),
            SdkError::ConstructionFailure(_) => "ConstructionFailure".to_owned(),
            _ => "Unknown".to_owned(),
        };
        Self { op, class, code, detail: DisplayErrorContext(&err).to_string() }
    }

    /// The service error code, for callers that treat one code specially (e.g. `ConditionalCheckFailedException`).
    pub fn is_code(&self, code: &str) -> bool {
        self.code == code
    }
}

impl Classify for AwsError {
    fn class(&self) -> Class {
        self.class
    }
    fn code(&self) -> &'static str {
        match self.class {
            Class::Transient => "aws_transient",
            Class::Permanent => "aws_rejected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::result::ServiceError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    #[derive(Debug)]
    struct Svc(ErrorMetadata);
    impl std::fmt::Display for Svc {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "service error {:?}", self.0.code())
        }
    }
    impl std::error::Error for Svc {}
    impl ProvideErrorMetadata for Svc {
        fn meta(&self) -> &ErrorMetadata {
            &self.0
        }
    }

    fn service_error(status: u16, code: &str) -> SdkError<Svc, HttpResponse> {
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        let err = Svc(ErrorMetadata::builder().code(code).build());
        SdkError::ServiceError(ServiceError::builder().source(err).raw(raw).build())
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        assert_eq!(Class::of_sdk(&service_error(400, "ThrottlingException")), Class::Transient);
        assert_eq!(Class::of_sdk(&service_error(400, "ProvisionedThroughputExceededException")), Class::Transient);
        assert_eq!(Class::of_sdk(&service_error(503, "Whatever")), Class::Transient);
        assert_eq!(Class::of_sdk(&service_error(500, "InternalError")), Class::Transient);
        assert_eq!(Class::of_sdk(&service_error(429, "Other")), Class::Transient);
    }

    #[test]
    fn client_errors_are_permanent() {
        assert_eq!(Class::of_sdk(&service_error(400, "ValidationException")), Class::Permanent);
        assert_eq!(Class::of_sdk(&service_error(403, "AccessDenied")), Class::Permanent);
        assert_eq!(Class::of_sdk(&service_error(404, "NoSuchBucket")), Class::Permanent);
    }

    #[test]
    fn timeouts_are_transient_and_construction_failures_permanent() {
        let t: SdkError<Svc, HttpResponse> = SdkError::timeout_error("slow");
        assert_eq!(Class::of_sdk(&t), Class::Transient);
        let c: SdkError<Svc, HttpResponse> = SdkError::construction_failure("bad request");
        assert_eq!(Class::of_sdk(&c), Class::Permanent);
    }

    #[test]
    fn aws_error_keeps_code_and_class() {
        let e = AwsError::new("dynamodb:PutItem", service_error(400, "ConditionalCheckFailedException"));
        assert!(e.is_code("ConditionalCheckFailedException"));
        assert_eq!(e.class(), Class::Permanent);
        assert!(e.to_string().starts_with("dynamodb:PutItem failed (ConditionalCheckFailedException)"));
    }
}
