//! `palisade replay <incident>`: from an alert to a reproduced failure in one command, and, after a fix, the same
//! input through the pipeline again.
//!
//! The incident names the function and where its input is kept. The input is fetched (a dead-letter message is
//! only hidden while it is used, never deleted unless the replay succeeds), the function's own host binary is
//! started with the deployed function's environment and this shell's credentials, and a one-shot Runtime API
//! serves it the one event. The binary runs in replay mode (`PALISADE_REPLAY=1`, see `palisade_shared::replay`):
//! its failure path reports instead of acting, so reproducing a failure leaves no DLQ copy, quarantined file or
//! incident behind, while its success path does everything for real.

pub mod input;
pub mod outcome;
pub mod runtime;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_credential_types::Credentials;
use palisade_shared::config::TableName;
use palisade_shared::envelope::Envelope;
use palisade_shared::error::AwsError;
use palisade_shared::ledger::{DynamoLedger, Ledger, LedgerEntry, LedgerError, RecordType};
use palisade_shared::messages::FileAccepted;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{CliError, Clients};
use input::{Kept, Letter, Wanted};
use outcome::{Ended, Outcome};

const QUEUE: &str = "AWS::SQS::Queue";
/// How long a message looked at during the search stays hidden from other readers (it is released right after).
const SEARCH_VISIBILITY_SECS: i32 = 30;
/// Past the function's own timeout, how long to wait for an answer before stopping it.
const ANSWER_MARGIN_SECS: u64 = 15;

/// What `palisade replay` was asked.
#[derive(Clone, Copy, Debug)]
pub struct ReplayArgs<'a> {
    /// The incident's ledger id.
    pub incident_id: &'a str,
    /// The stack whose ledger holds it; `None`: search every stack with a ledger.
    pub stack: Option<&'a str>,
    /// `--bin-dir`.
    pub bin_dir: Option<&'a Path>,
    /// `--json`.
    pub json: bool,
}

/// The one event to serve, and what to do with its source afterwards.
struct Prepared {
    event: Value,
    /// An SQS event (the runner answers with a replay report) rather than a direct one.
    sqs: bool,
    /// The dead-letter message, hidden while the replay runs.
    letter: Option<(String, Letter)>,
    /// Where the input is, for people.
    from: String,
    /// What stays after a reproduction, for people.
    left: String,
    /// What a success did besides the function's own effects (a dead-letter message's deletion is added to it).
    done: Option<String>,
}

/// Runs `palisade replay`; returns the exit code: 0 replayed, 1 reproduced.
pub async fn run(args: ReplayArgs<'_>) -> Result<u8, CliError> {
    let sdk = crate::sdk_config().await;
    let c = Clients::new(&sdk);
    let region = sdk.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
    let (st, ledger, entry) = locate(&c, args.stack, args.incident_id).await?;
    let crate_name = input::crate_of(&entry.function, &st.name).ok_or_else(|| {
        CliError::Input(format!(
            "incident {} is of function {}, which is not in stack {:?}",
            entry.id, entry.function, st.name
        ))
    })?;
    let kept = input::kept(&entry).map_err(CliError::Input)?;
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    let binary =
        find_binary(crate_name, args.bin_dir, exe_dir.as_deref(), target_dir.as_deref()).map_err(CliError::Input)?;

    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let config = lambda.get_function_configuration().function_name(&entry.function).send().await.map_err(|e| {
        let e = AwsError::new("lambda:GetFunctionConfiguration", e);
        if e.is_code("ResourceNotFoundException") {
            CliError::Input(format!("function {} is not deployed (was the stack changed?)", entry.function))
        } else {
            e.into()
        }
    })?;
    let function_arn = config.function_arn.clone().unwrap_or_default();
    let timeout_secs = u64::try_from(config.timeout.unwrap_or(3)).unwrap_or(3);
    let function_env: HashMap<String, String> =
        config.environment.and_then(|e| e.variables).unwrap_or_default().into_iter().collect();
    let facts = Facts {
        name: entry.function.clone(),
        memory_mb: config.memory_size.unwrap_or(128),
        region: region.clone(),
        credentials: resolved_credentials(&sdk).await?,
    };

    let source_queue = st.named(QUEUE, crate_name).map(str::to_owned);
    let prepared = prepare(&c, &st, crate_name, &entry, &kept, &region, &function_arn, source_queue).await?;
    if let Some((dlq, letter)) = &prepared.letter {
        // hidden for the whole run, so no other reader (a redrive, the alert function) takes it meanwhile
        let hide = i32::try_from(timeout_secs + ANSWER_MARGIN_SECS + 60).unwrap_or(i32::MAX);
        set_visibility(&c.sqs, dlq, &letter.receipt_handle, hide).await?;
    }
    let result = replay_once(&binary, &function_env, &facts, &prepared, &function_arn, timeout_secs).await;
    let verdict = match result {
        Ok(v) => v,
        Err(e) => {
            release(&c, &prepared).await;
            return Err(e);
        }
    };
    match verdict {
        Ok(Outcome::Replayed { note }) => {
            // the ledger first: it is the record; a DLQ copy left behind by a failed delete is a harmless duplicate
            let mut fields = serde_json::Map::new();
            fields.insert("replayed_at".into(), json!(chrono::Utc::now().to_rfc3339()));
            fields.insert("replayed_from".into(), json!(prepared.from));
            let marked = match ledger.get(&entry.id).await {
                Ok(Some(fresh)) => ledger.update(&fresh, Some("replayed"), fields).await,
                Ok(None) => Err(LedgerError::Malformed { id: entry.id.clone(), reason: "no such entry".into() }),
                Err(e) => Err(e),
            };
            if let Err(e) = marked {
                release(&c, &prepared).await;
                return Err(CliError::Other(format!(
                    "the input went through {}, but the incident could not be marked replayed: {e}",
                    entry.function
                )));
            }
            let removed = match &prepared.letter {
                Some((dlq, letter)) => {
                    c.sqs.delete_message().queue_url(dlq).receipt_handle(&letter.receipt_handle).send().await.map_err(
                        |e| {
                            CliError::Other(format!(
                                "the input went through and the incident is marked replayed, but its message stays \
                                 in {} (a duplicate now; delete it): {}",
                                queue_name(dlq),
                                AwsError::new("sqs:DeleteMessage", e)
                            ))
                        },
                    )?;
                    Some(queue_name(dlq).to_owned())
                }
                None => None,
            };
            let outcome = Outcome::Replayed { note: note.clone() };
            if args.json {
                crate::print_json(&report(&entry, &binary, &prepared, &outcome, removed.as_deref()))?;
            } else {
                if let Some(n) = note {
                    println!("note: {n}");
                }
                let done = match (&removed, &prepared.done) {
                    (Some(q), _) => format!("removed from {q}; "),
                    (None, Some(d)) => format!("{d}; "),
                    (None, None) => String::new(),
                };
                println!("replayed: the input went through {}; {done}incident marked replayed", entry.function);
            }
            Ok(0)
        }
        Ok(outcome @ Outcome::Reproduced { .. }) => {
            release(&c, &prepared).await;
            if args.json {
                crate::print_json(&report(&entry, &binary, &prepared, &outcome, None))?;
            } else if let Outcome::Reproduced { error_class, error_code, summary } = &outcome {
                println!("reproduced: {error_class} {error_code}: {summary}");
                let (was_class, was_code) = recorded_error(&entry);
                if was_code != *error_code {
                    println!("(the incident recorded {was_class} {was_code})");
                }
                println!("{}; this replay kept, moved and raised nothing", prepared.left);
            }
            Ok(1)
        }
        Err(undecided) => {
            release(&c, &prepared).await;
            Err(CliError::Other(format!("replay of {} decided nothing: {undecided}", entry.id)))
        }
    }
}

/// Finds the incident: in the given stack's ledger, or in the first stack whose ledger has it.
async fn locate(
    c: &Clients,
    stack: Option<&str>,
    id: &str,
) -> Result<(crate::stack::Stack, DynamoLedger, LedgerEntry), CliError> {
    let ledger_of = |st: &crate::stack::Stack| -> Result<DynamoLedger, CliError> {
        let table: TableName = st.physical("LedgerTable")?.parse().map_err(CliError::Other)?;
        Ok(DynamoLedger::new(c.db.clone(), table))
    };
    let get = |l: DynamoLedger| async move {
        let e = l.get(id).await.map_err(|e| CliError::Other(e.to_string()))?;
        Ok::<_, CliError>((l, e))
    };
    if let Some(name) = stack {
        let st = c.stack(name).await?;
        let (ledger, entry) = get(ledger_of(&st)?).await?;
        let entry = entry.ok_or_else(|| {
            CliError::Input(format!(
                "no incident {id:?} in the ledger of stack {name:?} (list them with `palisade incidents --stack \
                 {name}`; a pipeline's incidents are in its tenant's stack)"
            ))
        })?;
        return Ok((st, ledger, checked(entry)?));
    }
    let names = crate::stack::live_stacks(&c.cfn).await?;
    let mut searched = Vec::new();
    for name in &names {
        let st = c.stack(name).await?;
        let Ok(ledger) = ledger_of(&st) else { continue };
        searched.push(name.clone());
        if let (ledger, Some(entry)) = get(ledger).await? {
            eprintln!("incident {id} is in stack {name}");
            return Ok((st, ledger, checked(entry)?));
        }
    }
    Err(CliError::Input(format!(
        "no incident {id:?} in the ledger of any stack ({}); check AWS_REGION and credentials, or name the stack \
         with --stack",
        if searched.is_empty() { "none has a ledger".to_owned() } else { format!("searched {}", searched.join(", ")) }
    )))
}

/// Checks an entry is an incident that can be replayed.
fn checked(entry: LedgerEntry) -> Result<LedgerEntry, CliError> {
    let id = &entry.id;
    if entry.record_type != RecordType::Incident {
        return Err(CliError::Input(format!("{id} is a {} entry, not an incident", entry.record_type)));
    }
    if entry.outcome == "replayed" {
        let when = entry.details.get("replayed_at").and_then(Value::as_str).unwrap_or("earlier");
        return Err(CliError::Input(format!("incident {id} was already replayed ({when}): its input went through")));
    }
    Ok(entry)
}

fn recorded_error(entry: &LedgerEntry) -> (String, String) {
    let get = |k: &str| entry.details.get(k).and_then(Value::as_str).unwrap_or("unknown").to_owned();
    (get("error_class"), get("error_code"))
}

fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

fn report(entry: &LedgerEntry, binary: &Path, p: &Prepared, outcome: &Outcome, removed: Option<&str>) -> Value {
    let (was_class, was_code) = recorded_error(entry);
    let mut v = json!({
        "incident_id": entry.id,
        "function": entry.function,
        "binary": binary.display().to_string(),
        "input": p.from,
        "message_id": p.letter.as_ref().map(|(_, l)| l.message_id.clone()),
        "incident_error_class": was_class,
        "incident_error_code": was_code,
        // what the ledger says now
        "incident_outcome": if matches!(outcome, Outcome::Replayed { .. }) { "replayed" } else { entry.outcome.as_str() },
    });
    if let (Some(map), Ok(Value::Object(o))) = (v.as_object_mut(), serde_json::to_value(outcome)) {
        map.extend(o);
        if let Some(q) = removed {
            map.insert("removed_from".into(), json!(q));
        }
    }
    v
}

/// Fetches the input and builds the event.
#[allow(clippy::too_many_arguments)]
async fn prepare(
    c: &Clients,
    st: &crate::stack::Stack,
    crate_name: &str,
    entry: &LedgerEntry,
    kept: &Kept,
    region: &str,
    function_arn: &str,
    source_queue: Option<String>,
) -> Result<Prepared, CliError> {
    match kept {
        Kept::Queue(recorded) => {
            let dlq = st.named(QUEUE, &format!("{crate_name}-dlq")).unwrap_or(recorded).to_owned();
            let letter = find_letter(&c.sqs, &dlq, &Wanted::of(entry)).await?.ok_or_else(|| {
                CliError::Input(format!(
                    "the input of {} is no longer in {}: it was replayed, redriven or deleted (or another reader \
                     holds it right now; try again in a minute)",
                    entry.id,
                    queue_name(&dlq)
                ))
            })?;
            let (event, sqs) = if input::is_async_event(&letter) {
                let ev = serde_json::from_str(&letter.body)
                    .map_err(|_| CliError::Input(format!("the event kept for {} is not JSON", entry.id)))?;
                (ev, false)
            } else {
                let arn = input::queue_arn(source_queue.as_deref().unwrap_or(&dlq), region);
                (input::sqs_event(&letter.message_id, &letter.body, &letter.attributes, &arn), true)
            };
            let from = format!("{} (message {})", queue_name(&dlq), letter.message_id);
            let left = format!("the input stays in {from}");
            Ok(Prepared { event, sqs, letter: Some((dlq, letter)), from, left, done: None })
        }
        Kept::Quarantine { bucket, key } => {
            if crate_name != "pipeline-extract" {
                return Err(CliError::Input(format!(
                    "incident {} is an upload {crate_name} quarantined at s3://{bucket}/{key}; replaying it would \
                     mean uploading it again, which the deployed pipeline processes itself. Once the cause is \
                     fixed, copy it back under incoming/: aws s3 cp s3://{bucket}/{key} s3://{bucket}/incoming/<name>",
                    entry.id
                )));
            }
            let body =
                c.s3.get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| {
                        let e = AwsError::new("s3:GetObject", e);
                        if e.is_code("NoSuchKey") {
                            CliError::Input(format!("the quarantined file s3://{bucket}/{key} is gone (retention?)"))
                        } else {
                            e.into()
                        }
                    })?
                    .body
                    .collect()
                    .await
                    .map_err(|e| CliError::Other(format!("reading s3://{bucket}/{key}: {e}")))?
                    .into_bytes();
            let sha = hex::encode(Sha256::digest(&body));
            // the step's input, rebuilt: the same file (same digest, same chain) where it is kept now
            let accepted = FileAccepted {
                file_id: sha[..32].to_owned(),
                bucket: bucket.clone(),
                key: key.clone(),
                version_id: None,
                sha256: sha,
                size: body.len() as u64,
                file_type: input::file_type(&body).to_owned(),
            };
            let env = Envelope::with_correlation(entry.tenant.clone(), entry.correlation_id, accepted);
            let body = env.to_json().map_err(|e| CliError::Other(e.to_string()))?;
            let arn = input::queue_arn(source_queue.as_deref().unwrap_or("queue"), region);
            let event = input::sqs_event(&env.id.to_string(), &body, &Default::default(), &arn);
            let from = format!("s3://{bucket}/{key}");
            let (left, done) = (format!("the file stays at {from}"), format!("the quarantined file stays at {from}"));
            Ok(Prepared { event, sqs: true, letter: None, from, left, done: Some(done) })
        }
        Kept::Scheduled(time) => {
            let event = input::scheduled_event(*time, region, input::account_of(function_arn));
            let from = format!("the scheduled event of {}", time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            let left = "a scheduled event is rebuilt from its time, so there is nothing to keep".to_owned();
            let done = format!("it ran as {from}");
            Ok(Prepared { event, sqs: false, letter: None, from, left, done: Some(done) })
        }
    }
}

/// Starts the binary against the event and judges its answer.
async fn replay_once(
    binary: &Path,
    function_env: &HashMap<String, String>,
    facts: &Facts,
    p: &Prepared,
    function_arn: &str,
    timeout_secs: u64,
) -> Result<Result<Outcome, outcome::Undecided>, CliError> {
    let env = child_env(function_env, std::env::vars(), facts);
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(i64::try_from(timeout_secs).unwrap_or(900));
    let inv = runtime::Invocation {
        event: serde_json::to_vec(&p.event).map_err(|e| CliError::Other(e.to_string()))?,
        request_id: uuid::Uuid::new_v4().to_string(),
        deadline_ms: u64::try_from(deadline.timestamp_millis()).unwrap_or_default(),
        function_arn: function_arn.to_owned(),
    };
    eprintln!("replaying {} from {} with {}", facts.name, p.from, binary.display());
    let binary = binary.to_path_buf();
    let wait = Duration::from_secs(timeout_secs + ANSWER_MARGIN_SECS);
    let ended: Ended =
        tokio::task::spawn_blocking(move || runtime::run(&binary, &env, inv, wait, |l| eprintln!("{l}")))
            .await
            .map_err(|e| CliError::Other(format!("the replay task failed: {e}")))?
            .map_err(CliError::Other)?;
    Ok(outcome::judge(p.sqs, &ended))
}

/// Makes the dead-letter message visible again (after a reproduction, or when the replay could not run).
async fn release(c: &Clients, p: &Prepared) {
    if let Some((dlq, letter)) = &p.letter {
        if let Err(e) = set_visibility(&c.sqs, dlq, &letter.receipt_handle, 0).await {
            eprintln!("palisade: warning: the message stays hidden until its visibility timeout ends: {e}");
        }
    }
}

async fn set_visibility(sqs: &aws_sdk_sqs::Client, queue: &str, handle: &str, secs: i32) -> Result<(), CliError> {
    sqs.change_message_visibility()
        .queue_url(queue)
        .receipt_handle(handle)
        .visibility_timeout(secs)
        .send()
        .await
        .map_err(|e| AwsError::new("sqs:ChangeMessageVisibility", e))?;
    Ok(())
}

/// Searches `dlq` for the incident's input. Every message looked at is only hidden for a short while and made
/// visible again at the end: the search deletes nothing. Stops at a certain match, or when the queue has nothing
/// new to show.
async fn find_letter(sqs: &aws_sdk_sqs::Client, dlq: &str, wanted: &Wanted) -> Result<Option<Letter>, CliError> {
    let total: usize = sqs
        .get_queue_attributes()
        .queue_url(dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .ok()
        .and_then(|o| o.attributes)
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages).cloned())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut seen = std::collections::HashSet::new();
    let mut others: Vec<String> = Vec::new();
    let mut best: Option<(u8, Letter)> = None;
    let searched = loop {
        let got = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .visibility_timeout(SEARCH_VISIBILITY_SECS)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await;
        let got = match got {
            Ok(o) => o.messages.unwrap_or_default(),
            Err(e) => {
                release_all(sqs, dlq, &others).await;
                return Err(AwsError::new("sqs:ReceiveMessage", e).into());
            }
        };
        let mut new = 0usize;
        for m in got {
            let letter = Letter {
                message_id: m.message_id.unwrap_or_default(),
                receipt_handle: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
                attributes: m
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                    .collect(),
            };
            if !seen.insert(letter.message_id.clone()) {
                others.push(letter.receipt_handle);
                continue;
            }
            new += 1;
            match wanted.rank(&letter) {
                Some(r) if best.as_ref().is_none_or(|(b, _)| r < *b) => {
                    if let Some((_, previous)) = best.replace((r, letter)) {
                        others.push(previous.receipt_handle);
                    }
                }
                _ => others.push(letter.receipt_handle),
            }
        }
        if total > 10 {
            eprintln!("searched {} of about {total} message(s) in {}", seen.len(), queue_name(dlq));
        }
        if new == 0 || best.as_ref().is_some_and(|(r, _)| *r == 0) {
            break seen.len();
        }
    };
    release_all(sqs, dlq, &others).await;
    if best.is_none() && searched > 0 {
        eprintln!("searched {searched} message(s) in {}; none is this incident's input", queue_name(dlq));
    }
    Ok(best.map(|(_, l)| l))
}

/// Makes every message the search looked at visible again, ten at a time.
async fn release_all(sqs: &aws_sdk_sqs::Client, dlq: &str, handles: &[String]) {
    for (n, e) in palisade_shared::aws::release_messages(sqs, dlq, handles).await {
        eprintln!("palisade: warning: {n} message(s) stay hidden until their visibility timeout: {e}");
    }
}

/// What the function's environment needs besides its own variables.
#[derive(Clone, Debug)]
pub struct Facts {
    /// The deployed function's name.
    pub name: String,
    /// Its memory size, in MB.
    pub memory_mb: i32,
    /// The region this shell works in.
    pub region: String,
    /// This shell's credentials as the full chain resolved them (a profile, SSO...): the function reads
    /// credentials from its environment only.
    pub credentials: Option<Credentials>,
}

/// Resolves the operator's credentials once, for the child's environment.
async fn resolved_credentials(sdk: &aws_config::SdkConfig) -> Result<Option<Credentials>, CliError> {
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = sdk.credentials_provider() else { return Ok(None) };
    provider
        .provide_credentials()
        .await
        .map(Some)
        .map_err(|e| CliError::Input(format!("no AWS credentials for the replayed function: {e}")))
}

/// The environment of the replayed process: the deployed function's variables, then this shell's AWS
/// credentials, region and endpoint (the operator's access, not the function's role; credentials as resolved, so a
/// profile or SSO login works too), then what the Lambda runtime sets, and replay mode. Nothing else of this shell
/// leaks in.
pub fn child_env(
    function_env: &HashMap<String, String>,
    own: impl IntoIterator<Item = (String, String)>,
    f: &Facts,
) -> Vec<(String, String)> {
    let mut env: std::collections::BTreeMap<String, String> =
        function_env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let passes = |k: &str| {
        matches!(k, "PATH" | "HOME" | "SSL_CERT_FILE" | "SSL_CERT_DIR" | "RUST_BACKTRACE")
            || (k.starts_with("AWS_") && !k.starts_with("AWS_LAMBDA_"))
    };
    env.extend(own.into_iter().filter(|(k, _)| passes(k)));
    env.entry("AWS_REGION".into()).or_insert_with(|| f.region.clone());
    if let Some(c) = &f.credentials {
        env.insert("AWS_ACCESS_KEY_ID".into(), c.access_key_id().to_owned());
        env.insert("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key().to_owned());
        match c.session_token() {
            Some(t) => env.insert("AWS_SESSION_TOKEN".into(), t.to_owned()),
            None => env.remove("AWS_SESSION_TOKEN"),
        };
    }
    for (k, v) in [
        ("AWS_LAMBDA_FUNCTION_NAME", f.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", f.name)),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "palisade-replay".to_owned()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
        (palisade_shared::replay::ENV, "1".to_owned()),
    ] {
        env.insert(k.to_owned(), v);
    }
    env.into_iter().collect()
}

/// The host build of `crate_name`: in `bin_dir` when given, else beside this executable, else in
/// `$CARGO_TARGET_DIR/debug`.
pub fn find_binary(
    crate_name: &str,
    bin_dir: Option<&Path>,
    exe_dir: Option<&Path>,
    cargo_target: Option<&Path>,
) -> Result<PathBuf, String> {
    let dirs: Vec<PathBuf> = match bin_dir {
        Some(d) => vec![d.to_path_buf()],
        None => exe_dir.map(Path::to_path_buf).into_iter().chain(cargo_target.map(|t| t.join("debug"))).collect(),
    };
    if let Some(found) = dirs.iter().map(|d| d.join(crate_name)).find(|p| p.is_file()) {
        return Ok(found);
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "no host build of {crate_name} in {}: build it with `cargo build -p {crate_name}` (a host build; the arm64 \
         artifact of `sam build` does not run here) or give its folder with --bin-dir",
        if looked.is_empty() { "any folder".to_owned() } else { looked.join(", ") }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            name: "palisade-pipeline-acme-pipeline-deliver".into(),
            memory_mb: 256,
            region: "eu-west-1".into(),
            credentials: None,
        }
    }

    #[test]
    fn a_profile_shell_s_resolved_credentials_reach_the_child_which_reads_only_its_environment() {
        // GIVEN a shell that works through a profile, with a stale session token, and credentials the chain resolved
        let own = [("AWS_PROFILE", "ops"), ("AWS_SESSION_TOKEN", "stale")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let f = Facts { credentials: Some(Credentials::new("ASIAOPS", "secret", None, None, "test")), ..facts() };
        // WHEN the child's environment is built
        let env: HashMap<String, String> = child_env(&HashMap::new(), own, &f).into_iter().collect();
        // THEN the child gets the resolved keys, and no token that does not belong to them
        assert_eq!(env["AWS_ACCESS_KEY_ID"], "ASIAOPS");
        assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "secret");
        assert!(!env.contains_key("AWS_SESSION_TOKEN"));
        let f = Facts {
            credentials: Some(Credentials::new("ASIAOPS", "secret", Some("fresh".into()), None, "test")),
            ..facts()
        };
        let env: HashMap<String, String> = child_env(&HashMap::new(), [], &f).into_iter().collect();
        assert_eq!(env["AWS_SESSION_TOKEN"], "fresh");
    }

    #[test]
    fn the_child_gets_the_function_s_variables_our_aws_access_and_replay_mode_nothing_else() {
        // GIVEN the deployed variables and a shell with credentials, an endpoint and unrelated variables
        let function_env: HashMap<String, String> =
            [("PALISADE_TARGET_URL", "http://127.0.0.1:1/quotes"), ("PALISADE_REPLAY", "0")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        let own = [
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_LAMBDA_RUNTIME_API", "elsewhere"),
            ("PATH", "/usr/bin"),
            ("GITHUB_TOKEN", "never"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        // WHEN the child's environment is built
        let env: HashMap<String, String> = child_env(&function_env, own, &facts()).into_iter().collect();
        // THEN it has each part, replay mode wins over anything deployed, and the rest of the shell stays out
        assert_eq!(env["PALISADE_TARGET_URL"], "http://127.0.0.1:1/quotes");
        assert_eq!(
            (env["AWS_ACCESS_KEY_ID"].as_str(), env["AWS_ENDPOINT_URL"].as_str()),
            ("AKIA", "http://127.0.0.1:5000")
        );
        assert_eq!(env["AWS_REGION"], "eu-west-1");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "palisade-pipeline-acme-pipeline-deliver");
        assert_eq!(env["AWS_LAMBDA_LOG_FORMAT"], "JSON");
        assert_eq!(env["PALISADE_REPLAY"], "1");
        assert!(!env.contains_key("GITHUB_TOKEN"));
        assert!(!env.contains_key("AWS_LAMBDA_RUNTIME_API"), "the runtime API is set by the runner, not copied");
    }

    #[test]
    fn the_binary_is_looked_for_where_asked_or_beside_us_then_in_the_target_dir() {
        let root = std::env::temp_dir().join(format!("palisade-find-{}", std::process::id()));
        let (exe, target) = (root.join("bin"), root.join("target"));
        std::fs::create_dir_all(&exe).unwrap();
        std::fs::create_dir_all(target.join("debug")).unwrap();
        std::fs::write(target.join("debug").join("pipeline-deliver"), b"").unwrap();
        // found in the target dir when not beside us
        let found = find_binary("pipeline-deliver", None, Some(&exe), Some(&target)).unwrap();
        assert_eq!(found, target.join("debug").join("pipeline-deliver"));
        // beside us first
        std::fs::write(exe.join("pipeline-deliver"), b"").unwrap();
        assert_eq!(
            find_binary("pipeline-deliver", None, Some(&exe), Some(&target)).unwrap(),
            exe.join("pipeline-deliver")
        );
        // --bin-dir only, and a missing build says how to make one
        let err = find_binary("pipeline-deliver", Some(&root), Some(&exe), Some(&target)).unwrap_err();
        assert!(err.contains("cargo build -p pipeline-deliver") && err.contains("--bin-dir"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn queue_names_come_from_urls() {
        assert_eq!(queue_name("http://127.0.0.1:5000/123456789012/s-pipeline-deliver-dlq"), "s-pipeline-deliver-dlq");
    }
}
