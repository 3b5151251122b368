//! DynamoDB's batch calls with their limits and retries, for the few writers that batch: the scan's new
//! violations, the sweep's ladder and enforcement's bookkeeping.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};

use crate::error::{AwsError, Class};

/// An item as the SDK holds it.
pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB's limit on writes per BatchWriteItem.
pub const MAX_WRITES: usize = 25;
/// DynamoDB's limit on keys per BatchGetItem.
pub const MAX_READS: usize = 100;
/// Retries of what DynamoDB leaves unprocessed under load, with backoff from 50 ms to 2 s.
const RETRIES: u32 = 8;

fn unprocessed(op: &'static str, n: usize) -> AwsError {
    AwsError {
        op,
        class: Class::Transient,
        code: "UnprocessedItems".into(),
        detail: format!("{n} items still unprocessed after {RETRIES} retries"),
    }
}

/// A put of a whole item.
pub fn put(item: Item) -> Result<WriteRequest, AwsError> {
    let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| AwsError {
        op: "dynamodb:BatchWriteItem",
        class: Class::Permanent,
        code: "ConstructionFailure".into(),
        detail: e.to_string(),
    })?;
    Ok(WriteRequest::builder().put_request(put).build())
}

/// Writes every `(table, request)`, 25 per call, retrying what DynamoDB leaves unprocessed. The caller keeps
/// keys distinct within a call: DynamoDB refuses a batch that names one item twice.
pub async fn write_all(db: &aws_sdk_dynamodb::Client, requests: Vec<(String, WriteRequest)>) -> Result<(), AwsError> {
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        let mut pending: HashMap<String, Vec<WriteRequest>> = HashMap::new();
        for (table, r) in requests.by_ref().take(MAX_WRITES) {
            pending.entry(table).or_default().push(r);
        }
        let mut delay = Duration::from_millis(50);
        for attempt in 0..=RETRIES {
            let out = db
                .batch_write_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .map_err(|e| AwsError::new("dynamodb:BatchWriteItem", e))?;
            pending = out.unprocessed_items.unwrap_or_default();
            pending.retain(|_, v| !v.is_empty());
            if pending.is_empty() {
                break;
            }
            if attempt == RETRIES {
                return Err(unprocessed("dynamodb:BatchWriteItem", pending.values().map(Vec::len).sum()));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
    Ok(())
}

/// Reads the items with these keys from `table` (strongly consistent), 100 per call, retrying what DynamoDB
/// leaves unprocessed. Missing items are simply absent from the result, which is in no particular order.
pub async fn get_all(db: &aws_sdk_dynamodb::Client, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, AwsError> {
    let mut out = Vec::new();
    for chunk in keys.chunks(MAX_READS) {
        let build = |keys: Vec<Item>| {
            KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build().map_err(|e| AwsError {
                op: "dynamodb:BatchGetItem",
                class: Class::Permanent,
                code: "ConstructionFailure".into(),
                detail: e.to_string(),
            })
        };
        let mut pending = HashMap::from([(table.to_owned(), build(chunk.to_vec())?)]);
        let mut delay = Duration::from_millis(50);
        for attempt in 0..=RETRIES {
            let res = db
                .batch_get_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .map_err(|e| AwsError::new("dynamodb:BatchGetItem", e))?;
            out.extend(res.responses.unwrap_or_default().into_values().flatten());
            pending = res.unprocessed_keys.unwrap_or_default();
            pending.retain(|_, k| !k.keys.is_empty());
            if pending.is_empty() {
                break;
            }
            if attempt == RETRIES {
                return Err(unprocessed("dynamodb:BatchGetItem", pending.values().map(|k| k.keys.len()).sum()));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
    Ok(out)
}
