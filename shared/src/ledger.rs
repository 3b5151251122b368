//! The action ledger: every side effect recorded once, with who, what, when, the result and the correlation id.
//!
//! This is what the dashboard, the operator CLI and auditors read. Ids are derived from what identifies the side
//! effect (action, resource, violation or message), and writes are conditional, so a retried or duplicated
//! message can never add a second entry for the same effect.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::TableName;
use crate::envelope::TenantId;
use crate::error::{AwsError, Class, Classify};

/// What kind of record an entry is; also the partition key of the `by-type` index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordType {
    /// An enforcement action (or its dry run).
    Action,
    /// An undo of an action.
    Undo,
    /// A failure that needs a human.
    Incident,
    /// A file pipeline step's effect (delivered, quarantined, deleted by retention).
    File,
}

impl RecordType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Action => "action",
            RecordType::Undo => "undo",
            RecordType::Incident => "incident",
            RecordType::File => "file",
        }
    }
}

impl FromStr for RecordType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "action" => RecordType::Action,
            "undo" => RecordType::Undo,
            "incident" => RecordType::Incident,
            "file" => RecordType::File,
            other => return Err(format!("unknown record type {other:?}")),
        })
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ledger record. `details` holds resource state (before/after) and ids, never customer data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Derived from what identifies the effect; see [`LedgerEntry::derive_id`].
    pub id: String,
    /// Kind of record.
    pub record_type: RecordType,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Whose data or account.
    pub tenant: TenantId,
    /// Which function did it.
    pub function: String,
    /// What was done, e.g. `stop-instance`, `deliver`, `retention-delete`.
    pub action: String,
    /// What it was done to: an ARN, an instance id, `s3://bucket/key`.
    pub resource: String,
    /// The result, e.g. `applied`, `already-compliant`, `dry-run`, `delivered`, `open`.
    pub outcome: String,
    /// Who: the function, or the approver of an approved action.
    pub actor: String,
    /// The chain this belongs to.
    pub correlation_id: Uuid,
    /// Structured extras: state before and after, policy, violation id, error class.
    pub details: serde_json::Value,
}

impl LedgerEntry {
    /// A stable id from the parts that identify one effect, prefixed by its type for readability.
    pub fn derive_id(record_type: RecordType, parts: &[&str]) -> String {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p.as_bytes());
            h.update([0u8]);
        }
        let digest = hex::encode(h.finalize());
        format!("{}-{}", record_type.as_str(), &digest[..24])
    }
}

/// Whether a write added the entry or found it there already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// First time.
    New,
    /// Already recorded: nothing written.
    Duplicate,
}

/// Why the ledger could not be read or written.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LedgerError {
    /// DynamoDB failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A stored item does not decode.
    #[error("ledger item {id} is malformed: {reason}")]
    Malformed {
        /// The item id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

impl Classify for LedgerError {
    fn class(&self) -> Class {
        match self {
            LedgerError::Aws(e) => e.class,
            LedgerError::Malformed { .. } => Class::Permanent,
        }
    }
    fn code(&self) -> &'static str {
        "ledger"
    }
}

/// Where entries are kept.
pub trait Ledger: Send + Sync {
    /// Writes an entry unless its id exists.
    fn record(&self, entry: &LedgerEntry) -> impl Future<Output = Result<Recorded, LedgerError>> + Send;
    /// Reads one entry.
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<LedgerEntry>, LedgerError>> + Send;
    /// Sets the outcome (when given) and adds or replaces fields under `details` (e.g. `undone_by`) of `current`,
    /// the entry as the caller last wrote or read it. No read first: the write is conditional on `current`'s
    /// details, so a concurrent change fails it (transient) instead of being overwritten.
    fn update(
        &self,
        current: &LedgerEntry,
        outcome: Option<&str>,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// The DynamoDB ledger. Key `id`; global secondary index `by-type` (`record_type`, `at`).
#[derive(Clone, Debug)]
pub struct DynamoLedger {
    db: aws_sdk_dynamodb::Client,
    table: TableName,
}

impl DynamoLedger {
    /// Over `table`.
    pub fn new(db: aws_sdk_dynamodb::Client, table: TableName) -> Self {
        Self { db, table }
    }

    /// Entries of one type, newest first, through the `by-type` index (never a scan).
    pub async fn list(&self, record_type: RecordType, limit: i32) -> Result<Vec<LedgerEntry>, LedgerError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .db
                .query()
                .table_name(self.table.as_str())
                .index_name("by-type")
                .key_condition_expression("record_type = :t")
                .expression_attribute_values(":t", AttributeValue::S(record_type.as_str().into()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| AwsError::new("dynamodb:Query", e))?;
            for item in page.items.unwrap_or_default() {
                out.push(from_item(&item)?);
                if out.len() >= limit.max(0) as usize {
                    return Ok(out);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// The stored item of an entry (the enforcement flow batches its settled entries).
pub(crate) fn to_item(e: &LedgerEntry) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("id".to_owned(), s(&e.id)),
        ("record_type".to_owned(), s(e.record_type.as_str())),
        ("at".to_owned(), s(&e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))),
        ("tenant".to_owned(), s(e.tenant.as_str())),
        ("function".to_owned(), s(&e.function)),
        ("action".to_owned(), s(&e.action)),
        ("resource".to_owned(), s(&e.resource)),
        ("outcome".to_owned(), s(&e.outcome)),
        ("actor".to_owned(), s(&e.actor)),
        ("correlation_id".to_owned(), s(&e.correlation_id.to_string())),
        ("details".to_owned(), s(&e.details.to_string())),
    ])
}

/// Decodes a stored item (also used by the operator CLI and the dashboard).
pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<LedgerEntry, LedgerError> {
    let id = item.get("id").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let bad = |reason: String| LedgerError::Malformed { id: id.clone(), reason };
    let get = |k: &str| -> Result<String, LedgerError> {
        item.get(k).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| bad(format!("missing `{k}`")))
    };
    Ok(LedgerEntry {
        id: id.clone(),
        record_type: get("record_type")?.parse().map_err(bad)?,
        at: DateTime::parse_from_rfc3339(&get("at")?).map_err(|e| bad(e.to_string()))?.with_timezone(&Utc),
        tenant: get("tenant")?.parse().map_err(|e: crate::envelope::InvalidTenantId| bad(e.to_string()))?,
        function: get("function")?,
        action: get("action")?,
        resource: get("resource")?,
        outcome: get("outcome")?,
        actor: get("actor")?,
        correlation_id: get("correlation_id")?.parse().map_err(|e: uuid::Error| bad(e.to_string()))?,
        details: serde_json::from_str(&get("details")?).map_err(|e| bad(e.to_string()))?,
    })
}

impl Ledger for DynamoLedger {
    async fn record(&self, entry: &LedgerEntry) -> Result<Recorded, LedgerError> {
        let res = self
            .db
            .put_item()
            .table_name(self.table.as_str())
            .set_item(Some(to_item(entry)))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(Recorded::New),
            Err(e) => {
                let e = AwsError::new("dynamodb:PutItem", e);
                if e.is_code("ConditionalCheckFailedException") { Ok(Recorded::Duplicate) } else { Err(e.into()) }
            }
        }
    }

    async fn get(&self, id: &str) -> Result<Option<LedgerEntry>, LedgerError> {
        let out = self
            .db
            .get_item()
            .table_name(self.table.as_str())
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:GetItem", e))?;
        out.item.as_ref().map(from_item).transpose()
    }

    async fn update(
        &self,
        current: &LedgerEntry,
        outcome: Option<&str>,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), LedgerError> {
        // details is one JSON string, so the merge happens here, guarded by the value the caller holds.
        let mut details = current.details.clone();
        if let Some(map) = details.as_object_mut() {
            map.extend(fields);
        }
        self.db
            .update_item()
            .table_name(self.table.as_str())
            .key("id", s(&current.id))
            .update_expression("SET details = :new, outcome = :o")
            .condition_expression("details = :old")
            .expression_attribute_values(":new", s(&details.to_string()))
            .expression_attribute_values(":o", s(outcome.unwrap_or(&current.outcome)))
            .expression_attribute_values(":old", s(&current.details.to_string()))
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:UpdateItem", e))?;
        Ok(())
    }
}

/// In-memory ledger with the same semantics, for unit tests.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    /// Entries by id.
    pub entries: Mutex<HashMap<String, LedgerEntry>>,
}

impl Ledger for MemoryLedger {
    async fn record(&self, entry: &LedgerEntry) -> Result<Recorded, LedgerError> {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if m.contains_key(&entry.id) {
            return Ok(Recorded::Duplicate);
        }
        m.insert(entry.id.clone(), entry.clone());
        Ok(Recorded::New)
    }
    async fn get(&self, id: &str) -> Result<Option<LedgerEntry>, LedgerError> {
        Ok(self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned())
    }
    async fn update(
        &self,
        current: &LedgerEntry,
        outcome: Option<&str>,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), LedgerError> {
        let id = current.id.as_str();
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e =
            m.get_mut(id).ok_or_else(|| LedgerError::Malformed { id: id.into(), reason: "no such entry".into() })?;
        if let Some(o) = outcome {
            e.outcome = o.to_owned();
        }
        if let Some(map) = e.details.as_object_mut() {
            map.extend(fields);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(id: &str) -> LedgerEntry {
        LedgerEntry {
            id: id.into(),
            record_type: RecordType::Action,
            at: Utc::now(),
            tenant: "acme".parse().unwrap(),
            function: "enforce-stop-instance".into(),
            action: "stop-instance".into(),
            resource: "i-123".into(),
            outcome: "applied".into(),
            actor: "enforce-stop-instance".into(),
            correlation_id: Uuid::new_v4(),
            details: serde_json::json!({"before": {"state": "running"}}),
        }
    }

    #[test]
    fn derived_ids_are_stable_and_separate_parts() {
        let a = LedgerEntry::derive_id(RecordType::Action, &["stop-instance", "i-1", "v-1"]);
        assert_eq!(a, LedgerEntry::derive_id(RecordType::Action, &["stop-instance", "i-1", "v-1"]));
        assert_ne!(a, LedgerEntry::derive_id(RecordType::Action, &["stop-instance", "i-1v", "-1"]));
        assert!(a.starts_with("action-"));
    }

    #[test]
    fn item_round_trip() {
        let e = entry("action-1");
        let mut back = from_item(&to_item(&e)).unwrap();
        // stored with millisecond precision
        back.at = e.at;
        assert_eq!(back, e);
    }

    #[test]
    fn malformed_items_are_reported_not_panicked() {
        let mut item = to_item(&entry("x"));
        item.remove("tenant");
        assert!(matches!(from_item(&item), Err(LedgerError::Malformed { .. })));
    }

    #[tokio::test]
    async fn recording_twice_keeps_one_entry() {
        let l = MemoryLedger::default();
        assert_eq!(l.record(&entry("a")).await.unwrap(), Recorded::New);
        assert_eq!(l.record(&entry("a")).await.unwrap(), Recorded::Duplicate);
        assert_eq!(l.entries.lock().unwrap().len(), 1);
    }
}
