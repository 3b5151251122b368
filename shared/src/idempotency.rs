//! Idempotency: a redelivered message never repeats a side effect.
//!
//! Powertools' model, kept in DynamoDB: one record per `function#message`, claimed with a single conditional
//! put. `INPROGRESS` records expire with the invocation's deadline, so a crashed invocation does not block its
//! retry forever; `COMPLETED` records expire after a TTL long enough to cover SQS redelivery.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::config::TableName;
use crate::error::{AwsError, Class, Classify};

/// Outcome of trying to start work on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours: do the work, then complete or release.
    Acquired,
    /// Done before: skip the side effect.
    AlreadyCompleted,
    /// Another invocation holds it and its deadline has not passed: retry later.
    InProgress,
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("idempotency store: {0}")]
pub struct StoreError(#[from] pub AwsError);

impl Classify for StoreError {
    fn class(&self) -> Class {
        // Even a permanent-looking store failure is our infrastructure, not the message's fault: retry.
        Class::Transient
    }
    fn code(&self) -> &'static str {
        "idempotency_store"
    }
}

/// Where claims are kept.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` until `in_progress_until`; completed claims live until `expires_at`.
    fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// Marks the work done.
    fn complete(&self, key: &str, expires_at: DateTime<Utc>) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Gives the key up after a failure, so a retry can run.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";

/// The DynamoDB store: table with string key `id`, TTL attribute `expiration` (epoch seconds).
#[derive(Clone, Debug)]
pub struct DynamoIdempotency {
    db: aws_sdk_dynamodb::Client,
    table: TableName,
}

impl DynamoIdempotency {
    /// Over `table`.
    pub fn new(db: aws_sdk_dynamodb::Client, table: TableName) -> Self {
        Self { db, table }
    }
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl IdempotencyStore for DynamoIdempotency {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let put = self
            .db
            .put_item()
            .table_name(self.table.as_str())
            .item("id", AttributeValue::S(key.to_owned()))
            .item("status", AttributeValue::S(IN_PROGRESS.into()))
            .item("in_progress_expiry", n(in_progress_until.timestamp_millis()))
            .item("expiration", n(expires_at.timestamp()))
            .condition_expression(
                "attribute_not_exists(id) OR expiration < :now OR (#s = :ip AND in_progress_expiry < :now_ms)",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
            .expression_attribute_values(":ip", AttributeValue::S(IN_PROGRESS.into()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) => {
                let e = AwsError::new("dynamodb:PutItem", e);
                if !e.is_code("ConditionalCheckFailedException") {
                    return Err(e.into());
                }
                let got = self
                    .db
                    .get_item()
                    .table_name(self.table.as_str())
                    .key("id", AttributeValue::S(key.to_owned()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| AwsError::new("dynamodb:GetItem", e))?;
                let status = got.item.as_ref().and_then(|i| i.get("status")).and_then(|s| s.as_s().ok());
                Ok(if status.map(String::as_str) == Some(COMPLETED) {
                    Claim::AlreadyCompleted
                } else {
                    Claim::InProgress
                })
            }
        }
    }

    async fn complete(&self, key: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        self.db
            .update_item()
            .table_name(self.table.as_str())
            .key("id", AttributeValue::S(key.to_owned()))
            .update_expression("SET #s = :c, expiration = :e REMOVE in_progress_expiry")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":c", AttributeValue::S(COMPLETED.into()))
            .expression_attribute_values(":e", n(expires_at.timestamp()))
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.db
            .delete_item()
            .table_name(self.table.as_str())
            .key("id", AttributeValue::S(key.to_owned()))
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:DeleteItem", e))?;
        Ok(())
    }
}

/// A remembered claim: completed?, in progress until, expires at.
type MemoryClaim = (bool, DateTime<Utc>, DateTime<Utc>);

/// In-memory store with the same semantics, for unit tests of the runner's accounting.
#[derive(Debug, Default)]
pub struct MemoryIdempotency {
    items: Mutex<HashMap<String, MemoryClaim>>,
}

impl MemoryIdempotency {
    /// Whether no key was ever claimed.
    pub fn is_empty(&self) -> bool {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

impl IdempotencyStore for MemoryIdempotency {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((done, ip_until, exp)) = items.get(key) {
            let live = *exp >= now && (*done || *ip_until >= now);
            if live {
                return Ok(if *done { Claim::AlreadyCompleted } else { Claim::InProgress });
            }
        }
        items.insert(key.to_owned(), (false, in_progress_until, expires_at));
        Ok(Claim::Acquired)
    }

    async fn complete(&self, key: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(item) = items.get_mut(key) {
            item.0 = true;
            item.2 = expires_at;
        }
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[tokio::test]
    async fn claim_complete_and_expiry() {
        let s = MemoryIdempotency::default();
        let t0 = Utc::now();
        let (ip, exp) = (t0 + Duration::seconds(30), t0 + Duration::hours(1));
        assert_eq!(s.claim("f#1", t0, ip, exp).await.unwrap(), Claim::Acquired);
        assert_eq!(s.claim("f#1", t0, ip, exp).await.unwrap(), Claim::InProgress);
        // a crashed invocation's claim lapses with its deadline
        let later = t0 + Duration::seconds(31);
        assert_eq!(s.claim("f#1", later, later + Duration::seconds(30), exp).await.unwrap(), Claim::Acquired);
        s.complete("f#1", exp).await.unwrap();
        assert_eq!(s.claim("f#1", later, ip, exp).await.unwrap(), Claim::AlreadyCompleted);
        // completed records expire with their TTL
        let much_later = t0 + Duration::hours(2);
        assert_eq!(
            s.claim("f#1", much_later, much_later, much_later + Duration::hours(1)).await.unwrap(),
            Claim::Acquired
        );
    }

    #[tokio::test]
    async fn release_lets_a_retry_run() {
        let s = MemoryIdempotency::default();
        let t0 = Utc::now();
        let (ip, exp) = (t0 + Duration::seconds(30), t0 + Duration::hours(1));
        assert_eq!(s.claim("k", t0, ip, exp).await.unwrap(), Claim::Acquired);
        s.release("k").await.unwrap();
        assert_eq!(s.claim("k", t0, ip, exp).await.unwrap(), Claim::Acquired);
    }
}
