//! Enforcement actions: one trait, and the shared flow every `enforce-*` function runs.
//!
//! The flow re-checks that the violation still holds, writes the state before the change to the ledger *before*
//! changing anything (so a crash between the change and the record cannot lose what undo needs), applies the
//! change, records the state after it, and marks the violation enforced. It is idempotent per action, resource and
//! violation: a duplicate or replayed message finds the ledger entry and changes nothing. Undo reads the ledger
//! entry, restores the recorded state, and records the undo itself.

use std::collections::HashMap;
use std::future::Future;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::batch::{Dedup, Runner, RunnerConfig};
use crate::coalesce::Coalescer;
use crate::config::{Env, TableName, got};
use crate::envelope::{Envelope, Message};
use crate::error::{AwsError, Class, Classify};
use crate::ledger::{Ledger, LedgerEntry, LedgerError, RecordType, Recorded};

/// The resource an action targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    /// Resource kind as policies name it: `ec2-instance`, `s3-bucket`, `iam-access-key`, `security-group`,
    /// `access-grant`.
    pub kind: String,
    /// The resource's id (instance id, bucket name, access key id, group id, grant id).
    pub id: String,
    /// Extra identifiers some actions need (e.g. the user name owning an access key).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, Value>,
}

/// Whether to change anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Record what would be done; change nothing.
    DryRun,
    /// Change the resource.
    Enforce,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

/// Carry out an action on a violating resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnforceRequest {
    /// The action's name; must match the receiving function.
    pub action: String,
    /// The violation being enforced.
    pub violation_id: String,
    /// The policy that found it.
    pub policy: String,
    /// The target.
    pub resource: ResourceRef,
    /// The policy's parameters for the action (`actions:` in YAML).
    #[serde(default)]
    pub params: Value,
    /// Dry run or enforce.
    pub mode: Mode,
    /// Who approved it, for approval-gated policies.
    #[serde(default)]
    pub approved_by: Option<String>,
    /// Which occurrence of the violation (its first-seen time): a violation that comes back after being resolved
    /// or undone is enforced again, while redeliveries of one occurrence are not.
    #[serde(default)]
    pub occurrence: Option<String>,
}

/// Reverse an earlier enforcement from its ledger record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoRequest {
    /// The action's name; must match the receiving function.
    pub action: String,
    /// The ledger entry of the enforcement.
    pub ledger_id: String,
    /// Who asked.
    pub requested_by: String,
}

/// What an enforcement function receives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum ActionCommand {
    /// Enforce a violation.
    Enforce(EnforceRequest),
    /// Undo an enforcement.
    Undo(UndoRequest),
}

impl Message for ActionCommand {
    const KIND: &'static str = "action.command";
}

/// The resource's current state, as the action sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Inspection {
    /// Whether the violation still holds.
    pub violating: bool,
    /// State worth recording (and enough to undo), e.g. `{"state": "running"}`.
    pub state: Value,
}

/// One enforcement action. `NAME` is the YAML `type`, the topic and the crate suffix; `PERMISSIONS` are the
/// IAM actions it calls, which a test compares with the template's policy.
pub trait Action: Send + Sync {
    /// Kebab-case verb phrase, e.g. `stop-instance`.
    const NAME: &'static str;
    /// IAM actions this action calls (inspect, apply and undo).
    const PERMISSIONS: &'static [&'static str];
    /// Parameters a policy may set; unknown fields are refused.
    type Params: DeserializeOwned + Send + Sync;
    /// Reads the current state; `Ok(None)` when the resource no longer exists.
    fn inspect(&self, target: &ResourceRef) -> impl Future<Output = Result<Option<Inspection>, ActionError>> + Send;
    /// Changes the resource; returns the state after.
    fn apply(
        &self,
        target: &ResourceRef,
        params: &Self::Params,
        before: &Inspection,
    ) -> impl Future<Output = Result<Value, ActionError>> + Send;
    /// Restores the recorded state; returns the state after.
    fn undo(&self, target: &ResourceRef, before: &Value) -> impl Future<Output = Result<Value, ActionError>> + Send;
}

/// Why an action failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ActionError {
    /// Sent to the wrong function: a topic or subscription is miswired.
    #[error("command for action `{found}` delivered to `{expected}`")]
    WrongAction {
        /// This function's action.
        expected: &'static str,
        /// What the message named.
        found: String,
    },
    /// The policy's parameters do not fit this action.
    #[error("invalid parameters for `{action}`: {reason}")]
    Params {
        /// The action.
        action: &'static str,
        /// What is wrong (names fields, not values).
        reason: String,
    },
    /// Undo is not possible for this entry.
    #[error("cannot undo {ledger_id}: {reason}")]
    Undo {
        /// The ledger entry.
        ledger_id: String,
        /// Why.
        reason: String,
    },
    /// The state recorded for undo does not have the shape this action writes.
    #[error("recorded state is not usable: {0}")]
    State(String),
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl Classify for ActionError {
    fn class(&self) -> Class {
        match self {
            ActionError::Aws(e) => e.class,
            ActionError::Ledger(e) => e.class(),
            _ => Class::Permanent,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ActionError::WrongAction { .. } => "wrong_action",
            ActionError::Params { .. } => "invalid_params",
            ActionError::Undo { .. } => "cannot_undo",
            ActionError::State(_) => "bad_recorded_state",
            ActionError::Aws(e) => e.code(),
            ActionError::Ledger(_) => "ledger",
        }
    }
}

/// A violation's new state after an enforcement (or undo) of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    /// The violation.
    pub violation_id: String,
    /// Its new state (`enforced`, `resolved`, `undone`).
    pub state: &'static str,
    /// The ledger entry that explains it.
    pub ledger_id: String,
    /// Only while the violation is still this occurrence (its `first_seen`): a late command of an earlier
    /// occurrence never marks the violation that came back since. `None`: whatever occurrence.
    pub occurrence: Option<String>,
}

/// One record's closing bookkeeping: its settled ledger entry (when it changed) and its violation's mark.
#[derive(Clone, Debug)]
struct Closing {
    entry: Option<LedgerEntry>,
    mark: Option<Mark>,
}

/// The most records whose bookkeeping goes out together: two writes each, within BatchWriteItem's 25.
const CLOSING_GROUP: usize = crate::dynamo::MAX_WRITES / 2;

/// Where enforcements close their books: the settled ledger entry and the violation's new state.
///
/// Group-committed ([`crate::coalesce`]): the records of a batch that finish together cost one BatchGetItem of
/// their violations and one BatchWriteItem of entries and violations, instead of two UpdateItems each; their
/// claims likewise (see [`Books::claim`]). The writes are whole-item puts, which is safe here: the ledger entry
/// is the one this record claimed, and the violation is read in the same flush and changed only in its state,
/// ledger id and update time. A scan's `last_seen` written in the milliseconds between that read and the put
/// is lost until the next scan; the enforcement's state never is.
pub struct Books {
    db: aws_sdk_dynamodb::Client,
    violations: TableName,
    group: Coalescer<Closing, Result<(), AwsError>>,
    claims: Coalescer<LedgerEntry, Result<Option<Option<LedgerEntry>>, ActionError>>,
}

impl Books {
    /// Over the ledger and violations tables; starts the group writer on the current runtime.
    pub fn new(db: aws_sdk_dynamodb::Client, ledger: TableName, violations: TableName) -> Self {
        let (db3, ledger3) = (db.clone(), ledger.clone());
        let claims = Coalescer::spawn(crate::dynamo::MAX_WRITES, move |entries: Vec<LedgerEntry>| {
            let (db, ledger) = (db3.clone(), ledger3.clone());
            async move { write_claims(&db, &ledger, entries).await }
        });
        let (db2, ledger2, violations2) = (db.clone(), ledger, violations.clone());
        let group = Coalescer::spawn(CLOSING_GROUP, move |items: Vec<Closing>| {
            let (db, ledger, violations) = (db2.clone(), ledger2.clone(), violations2.clone());
            async move {
                let n = items.len();
                let result = write_closings(&db, &ledger, &violations, items).await;
                vec![result; n]
            }
        });
        Self { db, violations, group, claims }
    }

    async fn submit(&self, closing: Closing) -> Result<(), ActionError> {
        Ok(self.group.call(closing, "dynamodb:BatchWriteItem").await?)
    }

    /// Claims an entry that is about to change a resource: `None` when claimed, `Some(Some(entry already
    /// there))` for a redelivery, `Some(None)` for the second delivery of a command within one group (the first
    /// acts; if it fails, its own retry covers both). Grouped: one BatchGetItem and one BatchWriteItem for the
    /// records of a batch, instead of a conditional PutItem each. The window this opens (two deliveries of one
    /// command in different batches, both reading before either writes) lets both act, which every action
    /// tolerates, and both claims record the same state before the change; entries that change nothing are
    /// still written conditionally.
    pub async fn claim(&self, entry: &LedgerEntry) -> Result<Option<Option<LedgerEntry>>, ActionError> {
        self.claims.call(entry.clone(), "dynamodb:BatchWriteItem").await
    }

    /// Sets one violation's state at once (undo: rare, and alone in its batch).
    pub async fn mark(&self, m: &Mark) -> Result<(), AwsError> {
        let res = self
            .db
            .update_item()
            .table_name(self.violations.as_str())
            .key("id", AttributeValue::S(m.violation_id.clone()))
            .update_expression("SET #s = :s, ledger_id = :l, updated_at = :t")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":s", AttributeValue::S(m.state.to_owned()))
            .expression_attribute_values(":l", AttributeValue::S(m.ledger_id.clone()))
            .expression_attribute_values(":t", AttributeValue::S(Utc::now().to_rfc3339()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = AwsError::new("dynamodb:UpdateItem", e);
                if e.is_code("ConditionalCheckFailedException") { Ok(()) } else { Err(e) }
            }
        }
    }
}

/// One flush of [`Books::claim`]: reads the entries' ids, then writes those not there yet. Of two entries with
/// one id in a group (one command delivered twice), the first is written and the second is told a sibling has it.
async fn write_claims(
    db: &aws_sdk_dynamodb::Client,
    ledger: &TableName,
    entries: Vec<LedgerEntry>,
) -> Vec<Result<Option<Option<LedgerEntry>>, ActionError>> {
    let fail = |e: ActionError, n: usize| (0..n).map(|_| Err(e.clone())).collect::<Vec<_>>();
    let n = entries.len();
    let mut ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let keys = ids.iter().map(|id| HashMap::from([("id".to_owned(), AttributeValue::S((*id).to_owned()))])).collect();
    let found = match crate::dynamo::get_all(db, ledger.as_str(), keys).await {
        Ok(items) => items,
        Err(e) => return fail(e.into(), n),
    };
    let mut existing: HashMap<String, LedgerEntry> = HashMap::new();
    for item in &found {
        match crate::ledger::from_item(item) {
            Ok(e) => {
                existing.insert(e.id.clone(), e);
            }
            Err(e) => return fail(e.into(), n),
        }
    }
    let mut results = Vec::with_capacity(n);
    let mut writes = Vec::new();
    let mut claimed_here = std::collections::HashSet::new();
    for e in entries {
        if claimed_here.contains(&e.id) {
            results.push(Ok(Some(None)));
        } else if let Some(there) = existing.get(&e.id) {
            results.push(Ok(Some(Some(there.clone()))));
        } else {
            match crate::dynamo::put(crate::ledger::to_item(&e)) {
                Ok(w) => writes.push((ledger.as_str().to_owned(), w)),
                Err(err) => return fail(err.into(), n),
            }
            results.push(Ok(None));
            claimed_here.insert(e.id);
        }
    }
    match crate::dynamo::write_all(db, writes).await {
        Ok(()) => results,
        Err(e) => fail(e.into(), n),
    }
}

/// One flush of [`Books`]: reads the marked violations, then writes entries and violations in one batch. A
/// violation we do not know (an operator's ad-hoc command) is left alone, as is a repeated item (one message
/// delivered twice in a batch): the last write of an item wins, and both records get the same answer.
async fn write_closings(
    db: &aws_sdk_dynamodb::Client,
    ledger: &TableName,
    violations: &TableName,
    items: Vec<Closing>,
) -> Result<(), AwsError> {
    let key = |id: &str| HashMap::from([("id".to_owned(), AttributeValue::S(id.to_owned()))]);
    let mut marks: HashMap<String, Mark> = HashMap::new();
    let mut entries: HashMap<String, LedgerEntry> = HashMap::new();
    for c in items {
        if let Some(e) = c.entry {
            entries.insert(e.id.clone(), e);
        }
        if let Some(m) = c.mark {
            marks.insert(m.violation_id.clone(), m);
        }
    }
    let found = if marks.is_empty() {
        Vec::new()
    } else {
        crate::dynamo::get_all(db, violations.as_str(), marks.keys().map(|id| key(id)).collect()).await?
    };
    let now = AttributeValue::S(Utc::now().to_rfc3339());
    let mut writes = Vec::with_capacity(entries.len() + found.len());
    for e in entries.values() {
        writes.push((ledger.as_str().to_owned(), crate::dynamo::put(crate::ledger::to_item(e))?));
    }
    for mut item in found {
        let Some(m) = item.get("id").and_then(|v| v.as_s().ok()).and_then(|id| marks.get(id)) else { continue };
        let first_seen = item.get("first_seen").and_then(|v| v.as_s().ok());
        if m.occurrence.as_ref().is_some_and(|o| first_seen != Some(o)) {
            tracing::info!(message = "Violation came back since; its new occurrence is left alone.", violation_id = %m.violation_id);
            continue;
        }
        let (state, ledger_id) = (AttributeValue::S(m.state.to_owned()), AttributeValue::S(m.ledger_id.clone()));
        item.insert("state".into(), state);
        item.insert("ledger_id".into(), ledger_id);
        item.insert("updated_at".into(), now.clone());
        writes.push((violations.as_str().to_owned(), crate::dynamo::put(item)?));
    }
    crate::dynamo::write_all(db, writes).await
}

/// What the shared flow needs besides the action.
pub struct ActionCtx<L> {
    /// This function's name (the ledger's actor unless an approver is named).
    pub function: String,
    /// The ledger.
    pub ledger: L,
    /// Settled entries and violation states; `None` in unit tests, which settle through `ledger` alone.
    pub books: Option<Books>,
}

/// How a command ended, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// A new ledger entry with this outcome.
    Recorded(String),
    /// The ledger already had it; nothing changed.
    AlreadyDone,
}

/// Runs one command through `action`.
pub async fn handle<A: Action, L: Ledger>(
    action: &A,
    ctx: &ActionCtx<L>,
    msg: Envelope<ActionCommand>,
) -> Result<Handled, ActionError> {
    match &msg.payload {
        ActionCommand::Enforce(req) => enforce(action, ctx, &msg, req).await,
        ActionCommand::Undo(req) => undo(action, ctx, &msg, req).await,
    }
}

const APPLYING: &str = "applying";

async fn enforce<A: Action, L: Ledger>(
    action: &A,
    ctx: &ActionCtx<L>,
    msg: &Envelope<ActionCommand>,
    req: &EnforceRequest,
) -> Result<Handled, ActionError> {
    if req.action != A::NAME {
        return Err(ActionError::WrongAction { expected: A::NAME, found: req.action.clone() });
    }
    let params_json = if req.params.is_null() { json!({}) } else { req.params.clone() };
    let params: A::Params = serde_json::from_value(params_json)
        .map_err(|e| ActionError::Params { action: A::NAME, reason: crate::envelope::safe_json_error(&e) })?;
    let occurrence = req.occurrence.as_deref().unwrap_or("");
    let id = LedgerEntry::derive_id(
        RecordType::Action,
        &[A::NAME, &req.resource.id, &req.violation_id, occurrence, req.mode.as_str()],
    );
    let inspection = action.inspect(&req.resource).await?;
    let details = json!({
        "policy": req.policy,
        "violation_id": req.violation_id,
        "resource": req.resource,
        "mode": req.mode.as_str(),
        "approved_by": req.approved_by,
        "before": inspection.as_ref().map(|i| i.state.clone()),
    });
    let outcome = match &inspection {
        None => "gone",
        Some(i) => match (i.violating, req.mode) {
            (false, _) => "already-compliant",
            (true, Mode::DryRun) => "dry-run",
            (true, Mode::Enforce) => APPLYING,
        },
    };
    let entry = LedgerEntry {
        id: id.clone(),
        record_type: RecordType::Action,
        at: Utc::now(),
        tenant: msg.tenant.clone(),
        function: ctx.function.clone(),
        action: A::NAME.to_owned(),
        resource: req.resource.id.clone(),
        outcome: outcome.to_owned(),
        actor: req.approved_by.clone().unwrap_or_else(|| ctx.function.clone()),
        correlation_id: msg.correlation_id,
        details,
    };
    // The claim: the state before any change is on record before the change is made, and a second delivery of
    // the same enforcement finds the entry. An entry that will change something is claimed in a group (see
    // `Books::claim`); one that records no change keeps its conditional write, so it can never overwrite the
    // entry of a duplicate that did change something.
    let claimed = match &ctx.books {
        Some(books) if entry.outcome == APPLYING => books.claim(&entry).await?,
        _ => match ctx.ledger.record(&entry).await? {
            Recorded::New => None,
            Recorded::Duplicate => Some(ctx.ledger.get(&id).await?),
        },
    };
    let current = match claimed {
        None => entry,
        Some(existing) => match existing {
            // A retry after a crash mid-apply: its entry holds the state to undo to.
            Some(e) if e.outcome == APPLYING => e,
            Some(e) => {
                tracing::info!(message = "Already enforced; nothing to do.", ledger_id = %id);
                // The resource is done with, but the violation's mark may not be: a command published again
                // for a violation still `enforcing` (see the sweep) closes its books from the entry.
                let undone = e.details.get("undone_at").is_some_and(|v| !v.is_null());
                let state = match e.outcome.as_str() {
                    "applied" if !undone => Some("enforced"),
                    "gone" | "already-compliant" => Some("resolved"),
                    _ => None,
                };
                if let Some(state) = state {
                    close(ctx, req, None, state, &id).await?;
                }
                return Ok(Handled::AlreadyDone);
            }
            None => {
                tracing::info!(message = "Another delivery of this command acts; nothing to do.", ledger_id = %id);
                return Ok(Handled::AlreadyDone);
            }
        },
    };
    let Some(inspection) = inspection else {
        close(ctx, req, None, "resolved", &id).await?;
        return Ok(Handled::Recorded("gone".into()));
    };
    if current.outcome != APPLYING {
        tracing::info!(message = "No change made.", ledger_id = %id, outcome = %current.outcome);
        if current.outcome == "already-compliant" {
            close(ctx, req, None, "resolved", &id).await?;
        }
        return Ok(Handled::Recorded(current.outcome));
    }
    let after = if inspection.violating {
        action.apply(&req.resource, &params, &inspection).await?
    } else {
        inspection.state.clone()
    };
    let mut fields = serde_json::Map::new();
    fields.insert("after".into(), after);
    fields.insert("applied_at".into(), json!(Utc::now().to_rfc3339()));
    // The entry and the mark go out in one write when grouped. Apart, the ledger goes first: a crash before the
    // violation's mark leaves an applied entry, and the redelivery finds it and changes nothing. Until the entry
    // is settled it stays `applying`, and a redelivery re-inspects and settles it with the recorded before state.
    let settled = match &ctx.books {
        Some(_) => {
            let mut settled = current.clone();
            if let Some(map) = settled.details.as_object_mut() {
                map.extend(fields);
            }
            settled.outcome = "applied".into();
            Some(settled)
        }
        None => {
            ctx.ledger.update(&current, Some("applied"), fields).await?;
            None
        }
    };
    close(ctx, req, settled, "enforced", &id).await?;
    tracing::info!(message = "Action applied.", action = A::NAME, ledger_id = %id, policy = %req.policy);
    Ok(Handled::Recorded("applied".into()))
}

/// Closes an enforcement's books: the settled entry (when given) and, unless a dry run, the violation's state.
async fn close<L>(
    ctx: &ActionCtx<L>,
    req: &EnforceRequest,
    entry: Option<LedgerEntry>,
    state: &'static str,
    ledger_id: &str,
) -> Result<(), ActionError> {
    let mark = (req.mode != Mode::DryRun).then(|| Mark {
        violation_id: req.violation_id.clone(),
        state,
        ledger_id: ledger_id.to_owned(),
        occurrence: req.occurrence.clone(),
    });
    match &ctx.books {
        Some(books) if entry.is_some() || mark.is_some() => books.submit(Closing { entry, mark }).await,
        _ => Ok(()),
    }
}

async fn undo<A: Action, L: Ledger>(
    action: &A,
    ctx: &ActionCtx<L>,
    msg: &Envelope<ActionCommand>,
    req: &UndoRequest,
) -> Result<Handled, ActionError> {
    if req.action != A::NAME {
        return Err(ActionError::WrongAction { expected: A::NAME, found: req.action.clone() });
    }
    let cannot = |reason: &str| ActionError::Undo { ledger_id: req.ledger_id.clone(), reason: reason.to_owned() };
    let entry = ctx.ledger.get(&req.ledger_id).await?.ok_or_else(|| cannot("no such ledger entry"))?;
    if entry.action != A::NAME {
        return Err(cannot("the entry belongs to another action"));
    }
    if entry.details.get("undone_at").is_some_and(|v| !v.is_null()) {
        return Ok(Handled::AlreadyDone);
    }
    if entry.outcome != "applied" {
        return Err(cannot(&format!("its outcome is `{}`, so nothing was changed", entry.outcome)));
    }
    let target: ResourceRef = entry
        .details
        .get("resource")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .ok_or_else(|| ActionError::State("resource missing from ledger entry".into()))?;
    let before = entry.details.get("before").cloned().unwrap_or(Value::Null);
    let restored = action.undo(&target, &before).await?;
    let undo_id = LedgerEntry::derive_id(RecordType::Undo, &[&req.ledger_id]);
    let record = LedgerEntry {
        id: undo_id.clone(),
        record_type: RecordType::Undo,
        at: Utc::now(),
        tenant: msg.tenant.clone(),
        function: ctx.function.clone(),
        action: A::NAME.to_owned(),
        resource: target.id.clone(),
        outcome: "undone".into(),
        actor: req.requested_by.clone(),
        correlation_id: entry.correlation_id,
        details: json!({"ledger_id": req.ledger_id, "restored": restored, "resource": target}),
    };
    ctx.ledger.record(&record).await?;
    let mut fields = serde_json::Map::new();
    fields.insert("undone_at".into(), json!(Utc::now().to_rfc3339()));
    fields.insert("undone_by".into(), json!(req.requested_by));
    fields.insert("undo_id".into(), json!(undo_id));
    ctx.ledger.update(&entry, None, fields).await?;
    if let (Some(b), Some(vid)) = (&ctx.books, entry.details.get("violation_id").and_then(|v| v.as_str())) {
        b.mark(&Mark { violation_id: vid.to_owned(), state: "undone", ledger_id: undo_id.clone(), occurrence: None })
            .await?;
    }
    tracing::info!(message = "Action undone.", action = A::NAME, ledger_id = %req.ledger_id, undo_id = %undo_id);
    Ok(Handled::Recorded("undone".into()))
}

/// Records of one batch an enforcement function handles at once, unless `PALISADE_BATCH_CONCURRENCY` says
/// otherwise: SQS's largest batch.
pub const ENFORCE_CONCURRENCY: usize = 10;

/// The whole `main` of an enforcement function: configuration, runner, and the shared flow over `action`.
pub async fn run<A: Action>(action: A, sdk: &SdkConfig) -> Result<(), lambda_runtime::Error> {
    run_with(|_| Some(action), sdk).await
}

/// Like [`run`] for an action with settings of its own: `build` reads them from the same environment pass, so
/// a cold start reports the runner's and the action's missing variables together.
pub async fn run_with<A: Action>(
    build: impl FnOnce(&mut Env) -> Option<A>,
    sdk: &SdkConfig,
) -> Result<(), lambda_runtime::Error> {
    let mut env = Env::from_process();
    let runner_cfg = RunnerConfig::read(&mut env);
    let violations: Option<TableName> = env.required("PALISADE_VIOLATIONS_TABLE");
    let action = build(&mut env);
    env.finish()?;
    let action = got(action, A::NAME)?;
    let mut runner_cfg = got(runner_cfg, "runner configuration")?;
    // The ledger's derived ids, written conditionally, already make a redelivery change nothing.
    runner_cfg.dedup = Dedup::Handler;
    // A batch's records act on distinct resources, and their bookkeeping is grouped (`Books`): handled all at
    // once, a batch of ten closes its books in one read and one write.
    if std::env::var_os("PALISADE_BATCH_CONCURRENCY").is_none() {
        runner_cfg.concurrency = ENFORCE_CONCURRENCY;
    }
    let books = Books::new(
        aws_sdk_dynamodb::Client::new(sdk),
        runner_cfg.ledger_table.clone(),
        got(violations, "PALISADE_VIOLATIONS_TABLE")?,
    );
    let runner = Runner::new(runner_cfg, sdk);
    let ctx =
        ActionCtx { function: runner.config().function.clone(), ledger: runner.ledger().clone(), books: Some(books) };
    let (action, ctx) = (&action, &ctx);
    runner
        .run(move |msg: Envelope<ActionCommand>| async move {
            let _span = tracing::info_span!("action", action = A::NAME).entered();
            handle(action, ctx, msg).await.map(|_| ())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::MemoryLedger;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A switch that is "on" (violating) until turned off.
    #[derive(Default)]
    struct Switch {
        on: Mutex<Option<bool>>,
        applies: AtomicUsize,
        fail_apply_once: Mutex<bool>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct SwitchParams {
        #[serde(default)]
        #[allow(dead_code)]
        force: bool,
    }

    impl Action for Switch {
        const NAME: &'static str = "turn-off";
        const PERMISSIONS: &'static [&'static str] = &["test:TurnOff"];
        type Params = SwitchParams;
        async fn inspect(&self, _t: &ResourceRef) -> Result<Option<Inspection>, ActionError> {
            Ok(self.on.lock().unwrap().map(|on| Inspection { violating: on, state: json!({"on": on}) }))
        }
        async fn apply(&self, _t: &ResourceRef, _p: &SwitchParams, _b: &Inspection) -> Result<Value, ActionError> {
            self.applies.fetch_add(1, Ordering::SeqCst);
            *self.on.lock().unwrap() = Some(false);
            let mut fail = self.fail_apply_once.lock().unwrap();
            if *fail {
                *fail = false;
                // the change happened, then the invocation died before recording it
                return Err(ActionError::Aws(AwsError {
                    op: "x",
                    class: Class::Transient,
                    code: "Timeout".into(),
                    detail: String::new(),
                }));
            }
            Ok(json!({"on": false}))
        }
        async fn undo(&self, _t: &ResourceRef, before: &Value) -> Result<Value, ActionError> {
            let on = before.get("on").and_then(Value::as_bool).ok_or_else(|| ActionError::State("no `on`".into()))?;
            *self.on.lock().unwrap() = Some(on);
            Ok(json!({"on": on}))
        }
    }

    fn switch_on() -> Switch {
        let s = Switch::default();
        *s.on.lock().unwrap() = Some(true);
        s
    }

    fn ctx() -> ActionCtx<MemoryLedger> {
        ActionCtx { function: "enforce-turn-off".into(), ledger: MemoryLedger::default(), books: None }
    }

    fn cmd(mode: Mode, params: Value) -> Envelope<ActionCommand> {
        Envelope::new(
            "acme".parse().unwrap(),
            ActionCommand::Enforce(EnforceRequest {
                action: "turn-off".into(),
                violation_id: "v-1".into(),
                policy: "p".into(),
                resource: ResourceRef { kind: "switch".into(), id: "sw-1".into(), attributes: Default::default() },
                params,
                mode,
                approved_by: None,
                occurrence: None,
            }),
        )
    }

    fn only_entry(c: &ActionCtx<MemoryLedger>) -> LedgerEntry {
        let m = c.ledger.entries.lock().unwrap();
        assert_eq!(m.len(), 1, "{m:?}");
        m.values().next().unwrap().clone()
    }

    #[tokio::test]
    async fn enforce_records_before_and_after_once() {
        let (a, c) = (switch_on(), ctx());
        assert_eq!(handle(&a, &c, cmd(Mode::Enforce, Value::Null)).await.unwrap(), Handled::Recorded("applied".into()));
        // a second, distinct message for the same violation changes nothing
        assert_eq!(handle(&a, &c, cmd(Mode::Enforce, Value::Null)).await.unwrap(), Handled::AlreadyDone);
        assert_eq!(a.applies.load(Ordering::SeqCst), 1);
        let e = only_entry(&c);
        assert_eq!(e.outcome, "applied");
        assert_eq!(e.details["before"], json!({"on": true}));
        assert_eq!(e.details["after"], json!({"on": false}));
    }

    #[tokio::test]
    async fn a_crash_after_the_change_keeps_the_original_before_state() {
        let (a, c) = (switch_on(), ctx());
        *a.fail_apply_once.lock().unwrap() = true;
        let err = handle(&a, &c, cmd(Mode::Enforce, Value::Null)).await.unwrap_err();
        assert_eq!(err.class(), Class::Transient);
        assert_eq!(only_entry(&c).outcome, APPLYING);
        // the retry finds the switch already off, but still records what it was before
        handle(&a, &c, cmd(Mode::Enforce, Value::Null)).await.unwrap();
        let e = only_entry(&c);
        assert_eq!(e.outcome, "applied");
        assert_eq!(e.details["before"], json!({"on": true}));
        // and undo restores it
        let undo = Envelope::new(
            "acme".parse().unwrap(),
            ActionCommand::Undo(UndoRequest {
                action: "turn-off".into(),
                ledger_id: e.id.clone(),
                requested_by: "alice".into(),
            }),
        );
        assert_eq!(handle(&a, &c, undo.clone()).await.unwrap(), Handled::Recorded("undone".into()));
        assert_eq!(*a.on.lock().unwrap(), Some(true));
        assert_eq!(handle(&a, &c, undo).await.unwrap(), Handled::AlreadyDone);
        let m = c.ledger.entries.lock().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[&e.id].details["undone_by"], "alice");
    }

    #[tokio::test]
    async fn dry_run_and_compliant_resources_change_nothing() {
        let (a, c) = (switch_on(), ctx());
        assert_eq!(handle(&a, &c, cmd(Mode::DryRun, Value::Null)).await.unwrap(), Handled::Recorded("dry-run".into()));
        assert_eq!(a.applies.load(Ordering::SeqCst), 0);
        let (a, c) = (Switch::default(), ctx());
        *a.on.lock().unwrap() = Some(false);
        assert_eq!(
            handle(&a, &c, cmd(Mode::Enforce, Value::Null)).await.unwrap(),
            Handled::Recorded("already-compliant".into())
        );
        let (a, c) = (Switch::default(), ctx());
        assert_eq!(handle(&a, &c, cmd(Mode::Enforce, Value::Null)).await.unwrap(), Handled::Recorded("gone".into()));
    }

    #[tokio::test]
    async fn bad_params_and_wrong_action_are_permanent() {
        let (a, c) = (switch_on(), ctx());
        let err = handle(&a, &c, cmd(Mode::Enforce, json!({"forse": true}))).await.unwrap_err();
        assert_eq!((err.class(), err.code()), (Class::Permanent, "invalid_params"));
        assert!(err.to_string().contains("unknown field `forse`"), "{err}");
        let mut m = cmd(Mode::Enforce, Value::Null);
        if let ActionCommand::Enforce(r) = &mut m.payload {
            r.action = "stop-instance".into();
        }
        assert_eq!(handle(&a, &c, m).await.unwrap_err().code(), "wrong_action");
        assert_eq!(a.applies.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn undo_of_an_unknown_or_unapplied_entry_is_refused() {
        let (a, c) = (switch_on(), ctx());
        let undo = |id: &str| {
            Envelope::new(
                "acme".parse().unwrap(),
                ActionCommand::Undo(UndoRequest {
                    action: "turn-off".into(),
                    ledger_id: id.into(),
                    requested_by: "bob".into(),
                }),
            )
        };
        assert_eq!(handle(&a, &c, undo("action-nope")).await.unwrap_err().code(), "cannot_undo");
        handle(&a, &c, cmd(Mode::DryRun, Value::Null)).await.unwrap();
        let id = only_entry(&c).id;
        let err = handle(&a, &c, undo(&id)).await.unwrap_err();
        assert!(err.to_string().contains("outcome is `dry-run`"), "{err}");
    }
}
