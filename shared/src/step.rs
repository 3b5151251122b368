//! The error of a file pipeline step, shared by ingest and extract: a file that cannot be processed is not an
//! error (it is quarantined); these are the failures of the step itself.

use crate::error::{AwsError, Class, Classify};
use crate::incident::IncidentError;
use crate::ledger::LedgerError;
use crate::publish::PublishError;

/// Why a pipeline step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The message names another tenant's bucket: never read, whatever it says.
    #[error("object is in bucket {0}, which does not belong to this tenant")]
    ForeignBucket(String),
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Raising the incident for a quarantined file failed (the file stays; the message is retried).
    #[error(transparent)]
    Incident(#[from] IncidentError),
    /// The object could not be read, or a worker task died.
    #[error("{0}")]
    Io(String),
}

impl Classify for StepError {
    fn class(&self) -> Class {
        match self {
            StepError::ForeignBucket(_) => Class::Permanent,
            StepError::Aws(e) => e.class,
            StepError::Publish(e) => e.class(),
            StepError::Ledger(e) => e.class(),
            StepError::Incident(_) | StepError::Io(_) => Class::Transient,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            StepError::ForeignBucket(_) => "foreign_bucket",
            StepError::Aws(e) => e.code(),
            StepError::Publish(_) => "publish_failed",
            StepError::Ledger(_) => "ledger",
            StepError::Incident(_) => "incident_failed",
            StepError::Io(_) => "read_failed",
        }
    }
}
