//! Palisade's one message-handling crate.
//!
//! Every Lambda binary in `functions/` is a thin `main.rs` over a `handle` function; everything they have in
//! common lives here, so that message formats, batching, error classes, idempotency, the action ledger,
//! configuration and telemetry are decided once. Function crates never touch SQS or SNS JSON themselves.
#![deny(missing_docs)]

pub mod action;
pub mod alarm;
pub mod aws;
pub mod batch;
pub mod coalesce;
pub mod config;
pub mod dynamo;
pub mod envelope;
pub mod error;
pub mod events;
pub mod https;
pub mod idempotency;
pub mod incident;
pub mod ledger;
pub mod messages;
pub mod metrics;
pub mod publish;
pub mod quarantine;
pub mod replay;
pub mod step;
pub mod telemetry;
pub mod violations;

pub use envelope::{Envelope, Message, TenantId};
pub use error::{Class, Classify};
