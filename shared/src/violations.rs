//! The violations table: what the scan found, what the sweep has done about it, and what enforcement did.
//!
//! State lives here, never in resource tags. Reads go through the `by-state` index (state, first_seen), never a
//! table scan. The operator CLI, the dashboard, the scan and the sweep share this one definition of an item.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::action::ResourceRef;
use crate::config::TableName;
use crate::error::AwsError;

/// Where a violation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Found; reminders and grace running.
    Open,
    /// An enforcement message was published.
    Enforcing,
    /// The action was applied.
    Enforced,
    /// No longer holds (fixed by the owner, or gone).
    Resolved,
    /// Enforcement was undone by an operator.
    Undone,
}

impl Status {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Enforcing => "enforcing",
            Status::Enforced => "enforced",
            Status::Resolved => "resolved",
            Status::Undone => "undone",
        }
    }

    /// Every status, for listings.
    pub const ALL: [Status; 5] = [Status::Open, Status::Enforcing, Status::Enforced, Status::Resolved, Status::Undone];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One violation: a policy broken by a resource, from first seen until it is resolved, enforced or undone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// `<policy>#<resource id>`: one item per policy and resource.
    pub id: String,
    /// The policy.
    pub policy: String,
    /// The resource, as enforcement will address it.
    pub resource: ResourceRef,
    /// The scan's normalised view of the resource (tags included), for exceptions that match by tag.
    pub snapshot: serde_json::Value,
    /// Who is reminded.
    pub owner: String,
    /// From the policy.
    pub severity: String,
    /// Short machine reason.
    pub reason: String,
    /// One sentence for humans; never secrets.
    pub summary: String,
    /// Life-cycle state.
    pub state: Status,
    /// First seen in this occurrence.
    pub first_seen: DateTime<Utc>,
    /// Last seen by a scan.
    pub last_seen: DateTime<Utc>,
    /// Reminders sent in this occurrence.
    pub reminders_sent: u32,
    /// When the last reminder went out.
    pub last_reminder_at: Option<DateTime<Utc>>,
    /// Who approved enforcement.
    pub approved_by: Option<String>,
    /// The ledger entry of the enforcement (or undo).
    pub ledger_id: Option<String>,
    /// When the sweep expects the next step (reminder or enforcement), for the dashboard.
    pub next_step_at: Option<DateTime<Utc>>,
    /// What the sweep last decided (`wait`, `remind`, `enforce`, `await-approval`, `excepted`).
    pub next_step: Option<String>,
}

impl Violation {
    /// The item id for a policy and resource.
    pub fn key(policy: &str, resource_id: &str) -> String {
        format!("{policy}#{resource_id}")
    }

    /// The occurrence id enforcement messages carry: one per first-seen time.
    pub fn occurrence(&self) -> String {
        self.first_seen.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn ts(t: &DateTime<Utc>) -> AttributeValue {
    s(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The item for a violation.
pub fn to_item(v: &Violation) -> HashMap<String, AttributeValue> {
    let mut m = HashMap::from([
        ("id".to_owned(), s(&v.id)),
        ("policy".to_owned(), s(&v.policy)),
        ("resource".to_owned(), s(serde_json::to_string(&v.resource).unwrap_or_default())),
        ("snapshot".to_owned(), s(v.snapshot.to_string())),
        ("owner".to_owned(), s(&v.owner)),
        ("severity".to_owned(), s(&v.severity)),
        ("reason".to_owned(), s(&v.reason)),
        ("summary".to_owned(), s(&v.summary)),
        ("state".to_owned(), s(v.state.as_str())),
        ("first_seen".to_owned(), ts(&v.first_seen)),
        ("last_seen".to_owned(), ts(&v.last_seen)),
        ("reminders_sent".to_owned(), AttributeValue::N(v.reminders_sent.to_string())),
    ]);
    if let Some(t) = &v.last_reminder_at {
        m.insert("last_reminder_at".into(), ts(t));
    }
    if let Some(a) = &v.approved_by {
        m.insert("approved_by".into(), s(a));
    }
    if let Some(l) = &v.ledger_id {
        m.insert("ledger_id".into(), s(l));
    }
    if let Some(t) = &v.next_step_at {
        m.insert("next_step_at".into(), ts(t));
    }
    if let Some(n) = &v.next_step {
        m.insert("next_step".into(), s(n));
    }
    m
}

/// A violation from its item; `None` for items of other shapes (digest markers, scan summaries).
pub fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Violation> {
    let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let time = |k: &str| get(k).and_then(|t| DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.with_timezone(&Utc));
    Some(Violation {
        id: get("id")?,
        policy: get("policy")?,
        resource: serde_json::from_str(&get("resource")?).ok()?,
        snapshot: get("snapshot").and_then(|j| serde_json::from_str(&j).ok()).unwrap_or(serde_json::Value::Null),
        owner: get("owner").unwrap_or_default(),
        severity: get("severity").unwrap_or_default(),
        reason: get("reason").unwrap_or_default(),
        summary: get("summary").unwrap_or_default(),
        state: Status::parse(&get("state")?)?,
        first_seen: time("first_seen")?,
        last_seen: time("last_seen")?,
        reminders_sent: item
            .get("reminders_sent")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        last_reminder_at: time("last_reminder_at"),
        approved_by: get("approved_by"),
        ledger_id: get("ledger_id"),
        next_step_at: time("next_step_at"),
        next_step: get("next_step"),
    })
}

/// The table, with the queries the compliance functions and the CLI need.
#[derive(Clone, Debug)]
pub struct ViolationStore {
    db: aws_sdk_dynamodb::Client,
    table: TableName,
}

impl ViolationStore {
    /// Over `table`.
    pub fn new(db: aws_sdk_dynamodb::Client, table: TableName) -> Self {
        Self { db, table }
    }

    /// The table name.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// Every violation in `state`, oldest first, through the `by-state` index.
    pub async fn in_state(&self, state: Status) -> Result<Vec<Violation>, AwsError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .db
                .query()
                .table_name(self.table.as_str())
                .index_name("by-state")
                .key_condition_expression("#s = :s")
                .expression_attribute_names("#s", "state")
                .expression_attribute_values(":s", s(state.as_str()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| AwsError::new("dynamodb:Query", e))?;
            out.extend(page.items.unwrap_or_default().iter().filter_map(from_item));
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// One violation by id.
    pub async fn get(&self, id: &str) -> Result<Option<Violation>, AwsError> {
        let out = self
            .db
            .get_item()
            .table_name(self.table.as_str())
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:GetItem", e))?;
        Ok(out.item.as_ref().and_then(from_item))
    }

    /// Sets string attributes of an existing violation, only while it is in `expected` state (when given).
    /// Returns false when the condition did not hold.
    pub async fn set(
        &self,
        id: &str,
        fields: &[(&str, AttributeValue)],
        expected: Option<Status>,
    ) -> Result<bool, AwsError> {
        let e = Expression::of(fields, expected);
        let res = self
            .db
            .update_item()
            .table_name(self.table.as_str())
            .key("id", s(id))
            .update_expression(e.update)
            .condition_expression(e.condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = AwsError::new("dynamodb:UpdateItem", e);
                if e.is_code("ConditionalCheckFailedException") { Ok(false) } else { Err(e) }
            }
        }
    }

    /// Applies many [`Change`]s with the same conditions as [`ViolationStore::set`], [`CONCURRENT_WRITES`] at a
    /// time: a sweep over thousands of violations waits for tens of round trips, not thousands. Returns the ids
    /// whose condition did not hold (left unchanged).
    ///
    /// Why not TransactWriteItems (100 updates per call): a transaction is all or nothing, so one violation
    /// changed meanwhile (enforced, resolved) cancels the other 99, and it bills every item twice. DynamoDB
    /// has no non-transactional batch of conditional updates.
    pub async fn set_many(&self, changes: &[Change]) -> Result<HashSet<String>, AwsError> {
        let mut refused = HashSet::new();
        for wave in waves(changes) {
            let results: Vec<Result<(String, bool), AwsError>> = futures::stream::iter(wave)
                .map(|c| async move { self.set(&c.id, &c.fields, c.expected).await.map(|ok| (c.id.clone(), ok)) })
                .buffer_unordered(CONCURRENT_WRITES)
                .collect()
                .await;
            for r in results {
                let (id, ok) = r?;
                if !ok {
                    refused.insert(id);
                }
            }
        }
        Ok(refused)
    }

    /// Writes whole violations, 25 per BatchWriteItem call (DynamoDB's limit), retrying what DynamoDB leaves
    /// unprocessed under load.
    ///
    /// A blind put: the scan writes new occurrences, and the sweep the fields only it changes (reminders,
    /// `next_step`, and `open` to `enforcing` before it publishes). A concurrent writer's change to the same item
    /// in the seconds between the sweep's read and this write is put back: a scan's `last_seen` (refreshed by the
    /// next scan), a scan's `resolved` (the next scan resolves it again, and an enforcement of it finds the
    /// resource compliant), or an operator's approval (`palisade approve` shows it missing and is run again).
    /// Conditional updates would close that window at one call per violation, which is most of a sweep's cost.
    pub async fn put_many(&self, violations: &[Violation]) -> Result<(), AwsError> {
        let requests = violations
            .iter()
            .map(|v| crate::dynamo::put(to_item(v)).map(|r| (self.table.as_str().to_owned(), r)))
            .collect::<Result<Vec<_>, AwsError>>()?;
        crate::dynamo::write_all(&self.db, requests).await
    }

    /// A free-form marker item (digest times, the last scan's counts), kept in the same table under its own id.
    pub async fn put_marker(&self, id: &str, kind: &str, body: &serde_json::Value) -> Result<(), AwsError> {
        self.db
            .put_item()
            .table_name(self.table.as_str())
            .item("id", s(id))
            .item("state", s(kind))
            .item("first_seen", ts(&Utc::now()))
            .item("body", s(body.to_string()))
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:PutItem", e))?;
        Ok(())
    }

    /// Reads a marker item's body.
    pub async fn marker(&self, id: &str) -> Result<Option<serde_json::Value>, AwsError> {
        let out = self
            .db
            .get_item()
            .table_name(self.table.as_str())
            .key("id", s(id))
            .send()
            .await
            .map_err(|e| AwsError::new("dynamodb:GetItem", e))?;
        Ok(out
            .item
            .and_then(|i| i.get("body").and_then(|b| b.as_s().ok()).cloned())
            .and_then(|b| serde_json::from_str(&b).ok()))
    }
}

/// One conditional change for [`ViolationStore::set_many`].
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The violation.
    pub id: String,
    /// Attributes to set.
    pub fields: Vec<(&'static str, AttributeValue)>,
    /// Only while the violation is in this state; `None`: only while it exists.
    pub expected: Option<Status>,
}

/// Conditional updates [`ViolationStore::set_many`] keeps in flight.
pub const CONCURRENT_WRITES: usize = 8;

/// The most changes in one wave.
const MAX_WAVE: usize = 100;

/// Splits changes into waves written concurrently: at most [`MAX_WAVE`] each, and never two changes to one item
/// in the same wave (their order would be lost), keeping the order of waves.
fn waves(changes: &[Change]) -> Vec<Vec<&Change>> {
    let mut out: Vec<Vec<&Change>> = Vec::new();
    let mut ids: HashSet<&str> = HashSet::new();
    for c in changes {
        let full = out.last().is_none_or(|l| l.len() >= MAX_WAVE) || ids.contains(c.id.as_str());
        if full {
            out.push(Vec::new());
            ids.clear();
        }
        ids.insert(&c.id);
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

/// An update expression with its condition, names and values.
struct Expression {
    update: String,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expression {
    fn of(fields: &[(&str, AttributeValue)], expected: Option<Status>) -> Self {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        for (i, (k, v)) in fields.iter().enumerate() {
            sets.push(format!("#f{i} = :v{i}"));
            names.insert(format!("#f{i}"), (*k).to_owned());
            values.insert(format!(":v{i}"), v.clone());
        }
        let condition = match expected {
            Some(st) => {
                names.insert("#cs".into(), "state".into());
                values.insert(":cs".into(), s(st.as_str()));
                "#cs = :cs".to_owned()
            }
            None => "attribute_exists(id)".to_owned(),
        };
        Self { update: format!("SET {}", sets.join(", ")), condition, names, values }
    }
}

/// A timestamp attribute value, for [`ViolationStore::set`].
pub fn time_value(t: &DateTime<Utc>) -> AttributeValue {
    ts(t)
}

/// A string attribute value, for [`ViolationStore::set`].
pub fn text_value(v: impl Into<String>) -> AttributeValue {
    s(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_round_trip() {
        let v = Violation {
            id: Violation::key("p", "i-1"),
            policy: "p".into(),
            resource: ResourceRef { kind: "ec2-instance".into(), id: "i-1".into(), attributes: Default::default() },
            snapshot: serde_json::json!({"tags": {"owner": "a@b.c"}}),
            owner: "a@b.c".into(),
            severity: "high".into(),
            reason: "too-old".into(),
            summary: "Instance i-1 is 40 days old.".into(),
            state: Status::Open,
            first_seen: DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().with_timezone(&Utc),
            last_seen: DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap().with_timezone(&Utc),
            reminders_sent: 2,
            last_reminder_at: None,
            approved_by: Some("alice".into()),
            ledger_id: None,
            next_step_at: None,
            next_step: Some("wait".into()),
        };
        assert_eq!(from_item(&to_item(&v)), Some(v));
    }

    #[test]
    fn waves_hold_at_most_100_changes_and_never_one_item_twice() {
        let change = |id: &str| Change { id: id.into(), fields: vec![("next_step", s("wait"))], expected: None };
        let mut changes: Vec<Change> = (0..250).map(|i| change(&format!("v{i}"))).collect();
        changes.insert(10, change("v3")); // a second change to v3
        let chunks = waves(&changes);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 100, 100, 41]);
        for c in &chunks {
            let ids: HashSet<&str> = c.iter().map(|x| x.id.as_str()).collect();
            assert_eq!(ids.len(), c.len());
        }
        // order kept: v3's second change comes after its first
        assert_eq!(chunks[1][0].id, "v3");
        assert!(waves(&[]).is_empty());
    }

    #[test]
    fn expressions_name_every_field_and_guard_on_state_or_existence() {
        let e = Expression::of(&[("state", s("enforcing")), ("next_step", s("enforce"))], Some(Status::Open));
        assert_eq!(e.update, "SET #f0 = :v0, #f1 = :v1");
        assert_eq!(e.condition, "#cs = :cs");
        assert_eq!(e.names["#f0"], "state");
        assert_eq!(e.values[":cs"], s("open"));
        assert_eq!(Expression::of(&[("a", s("b"))], None).condition, "attribute_exists(id)");
    }

    #[test]
    fn other_items_are_not_violations() {
        let mut m = HashMap::new();
        m.insert("id".to_owned(), s("digest#a@b.c"));
        m.insert("state".to_owned(), s("digest"));
        assert_eq!(from_item(&m), None);
    }
}
