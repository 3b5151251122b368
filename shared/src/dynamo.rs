//! DynamoDB's batch calls with their limits and retries, for the few writers that batch: the scan's new
//! violations, the sweep's ladder and enforcement's bookkeeping.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use futures::StreamExt;

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

/// Writes every `(table, request)`, 25 per call and [`CONCURRENT_CALLS`] calls at a time, retrying what
/// DynamoDB leaves unprocessed. The caller keeps keys distinct across the whole list: DynamoDB refuses a batch
/// that names one item twice, and calls running at once have no order between them.
pub async fn write_all(db: &aws_sdk_dynamodb::Client, requests: Vec<(String, WriteRequest)>) -> Result<(), AwsError> {
    let mut calls: Vec<HashMap<String, Vec<WriteRequest>>> = Vec::new();
    for (i, (table, r)) in requests.into_iter().enumerate() {
        if i % MAX_WRITES == 0 {
            calls.push(HashMap::new());
        }
        if let Some(call) = calls.last_mut() {
            call.entry(table).or_default().push(r);
        }
    }
    let results: Vec<Result<(), AwsError>> =
        futures::stream::iter(calls).map(|call| write_one(db, call)).buffer_unordered(CONCURRENT_CALLS).collect().await;
    results.into_iter().collect()
}

/// Batch calls one [`write_all`] keeps in flight: a sweep's thousands of changes wait for tens of round trips.
pub const CONCURRENT_CALLS: usize = 4;

async fn write_one(
    db: &aws_sdk_dynamodb::Client,
    mut pending: HashMap<String, Vec<WriteRequest>>,
) -> Result<(), AwsError> {
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
            return Ok(());
        }
        if attempt == RETRIES {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    Err(unprocessed("dynamodb:BatchWriteItem", pending.values().map(Vec::len).sum()))
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
