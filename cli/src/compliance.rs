//! Violations, the ledger, approvals and undo: the compliance stack's tables and enforcement topics.

use palisade_shared::action::{ActionCommand, UndoRequest};
use palisade_shared::config::{TableName, TopicArn};
use palisade_shared::envelope::Envelope;
use palisade_shared::ledger::{DynamoLedger, Ledger, LedgerEntry, RecordType};
use palisade_shared::publish::Publisher;
use palisade_shared::violations::{Status, Violation, ViolationStore, text_value, time_value};

use crate::table::Table;
use crate::{CliError, Clients, print_json};

fn table_name(s: &str) -> Result<TableName, CliError> {
    s.parse().map_err(CliError::Other)
}

async fn store(c: &Clients, stack: &str) -> Result<ViolationStore, CliError> {
    let st = c.stack(stack).await?;
    Ok(ViolationStore::new(c.db.clone(), table_name(st.physical("ViolationsTable")?)?))
}

async fn ledger_of(c: &Clients, stack: &str) -> Result<(DynamoLedger, crate::stack::Stack), CliError> {
    let st = c.stack(stack).await?;
    let l = DynamoLedger::new(c.db.clone(), table_name(st.physical("LedgerTable")?)?);
    Ok((l, st))
}

fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `palisade violations`: one state through the by-state index, or every state.
pub async fn violations(c: &Clients, stack: &str, state: Option<Status>, json: bool) -> Result<(), CliError> {
    let store = store(c, stack).await?;
    let mut all: Vec<Violation> = Vec::new();
    // progress on a terminal only, so piped output and --json stay clean
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for s in state.map_or(Status::ALL.to_vec(), |s| vec![s]) {
        all.extend(store.in_state(s).await?);
        if progress {
            eprint!("\rread {} violation(s), up to state {}   ", all.len(), s.as_str());
        }
    }
    if progress {
        eprintln!();
    }
    if json {
        return print_json(&all);
    }
    let mut t = Table::new(["ID", "STATE", "SEVERITY", "OWNER", "FIRST SEEN", "NEXT STEP", "APPROVED BY"]);
    for v in &all {
        t.row([
            v.id.clone(),
            v.state.as_str().to_owned(),
            v.severity.clone(),
            v.owner.clone(),
            ts(&v.first_seen),
            v.next_step.clone().unwrap_or_default(),
            v.approved_by.clone().unwrap_or_default(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `palisade ledger` and `palisade incidents`: entries of one type, newest first.
pub async fn ledger(c: &Clients, stack: &str, record_type: RecordType, limit: i32, json: bool) -> Result<(), CliError> {
    let (l, _) = ledger_of(c, stack).await?;
    let entries = l.list(record_type, limit).await.map_err(|e| CliError::Other(e.to_string()))?;
    if json {
        return print_json(&entries);
    }
    let mut t = Table::new(["ID", "AT", "ACTION", "RESOURCE", "OUTCOME", "ACTOR", "CORRELATION ID"]);
    for e in &entries {
        t.row([
            e.id.clone(),
            ts(&e.at),
            e.action.clone(),
            e.resource.clone(),
            e.outcome.clone(),
            e.actor.clone(),
            e.correlation_id.to_string(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `palisade approve`: records the approver on an open violation; the next sweep enforces it.
pub async fn approve(c: &Clients, stack: &str, id: &str, by: &str) -> Result<(), CliError> {
    let store = store(c, stack).await?;
    let v = store.get(id).await?.ok_or_else(|| CliError::Input(format!("no violation {id:?}")))?;
    if v.state != Status::Open {
        return Err(CliError::Input(format!(
            "violation {id:?} is {}, not open: only open violations can be approved",
            v.state.as_str()
        )));
    }
    let now = chrono::Utc::now();
    let fields = [("approved_by", text_value(by)), ("approved_at", time_value(&now))];
    if !store.set(id, &fields, Some(Status::Open)).await? {
        return Err(CliError::Input(format!("violation {id:?} changed state while approving; run again")));
    }
    println!("approved {id} by {by}; the next sweep enforces it");
    Ok(())
}

/// Whether an entry can be undone, and why not.
pub fn undoable(e: &LedgerEntry) -> Result<(), String> {
    if e.record_type != RecordType::Action {
        return Err(format!("{} is a {} entry; only action entries can be undone", e.id, e.record_type));
    }
    if e.details.get("undone_at").is_some_and(|v| !v.is_null()) {
        return Err(format!("{} was already undone", e.id));
    }
    if e.outcome != "applied" {
        return Err(format!("{}'s outcome is `{}`, so nothing was changed to undo", e.id, e.outcome));
    }
    Ok(())
}

/// `palisade undo`: publishes an undo command to the action's enforcement topic; prints the correlation id.
pub async fn undo(c: &Clients, stack: &str, ledger_id: &str, by: &str) -> Result<(), CliError> {
    let (l, st) = ledger_of(c, stack).await?;
    let entry = l
        .get(ledger_id)
        .await
        .map_err(|e| CliError::Other(e.to_string()))?
        .ok_or_else(|| CliError::Input(format!("no ledger entry {ledger_id:?}")))?;
    undoable(&entry).map_err(CliError::Input)?;
    let topic = st
        .named("AWS::SNS::Topic", &format!("enforce-{}", entry.action))
        .ok_or_else(|| CliError::Input(format!("stack {stack:?} has no topic {stack}-enforce-{}", entry.action)))?;
    let topic: TopicArn = topic.parse().map_err(CliError::Other)?;
    let cmd = ActionCommand::Undo(UndoRequest {
        action: entry.action.clone(),
        ledger_id: entry.id.clone(),
        requested_by: by.to_owned(),
    });
    // The undo continues the action's chain, so one correlation id finds the action, the undo and their logs.
    let env = Envelope::with_correlation(entry.tenant.clone(), entry.correlation_id, cmd);
    Publisher::new(c.sns.clone()).publish(&topic, &env).await.map_err(|e| CliError::Other(e.to_string()))?;
    println!(
        "undo of {} ({} on {}) requested; correlation id {}",
        entry.id, entry.action, entry.resource, env.correlation_id
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outcome: &str, details: serde_json::Value) -> LedgerEntry {
        LedgerEntry {
            id: "action-1".into(),
            record_type: RecordType::Action,
            at: chrono::Utc::now(),
            tenant: "acme".parse().unwrap(),
            function: "enforce-stop-instance".into(),
            action: "stop-instance".into(),
            resource: "i-1".into(),
            outcome: outcome.into(),
            actor: "enforce-stop-instance".into(),
            correlation_id: uuid::Uuid::new_v4(),
            details,
        }
    }

    #[test]
    fn only_applied_actions_not_yet_undone_can_be_undone() {
        assert!(undoable(&entry("applied", serde_json::json!({}))).is_ok());
        assert!(undoable(&entry("dry-run", serde_json::json!({}))).unwrap_err().contains("`dry-run`"));
        let done = entry("applied", serde_json::json!({"undone_at": "2026-01-01T00:00:00Z"}));
        assert!(undoable(&done).unwrap_err().contains("already undone"));
        let mut inc = entry("open", serde_json::json!({}));
        inc.record_type = RecordType::Incident;
        assert!(undoable(&inc).unwrap_err().contains("incident entry"));
    }
}
