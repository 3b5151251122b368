//! The command line: every subcommand, its arguments and their checks, parsed before any AWS call.

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use palisade_shared::ledger::RecordType;
use palisade_shared::violations::Status;

/// Operate Palisade: policies, violations, the ledger, approvals, undo, access grants and dead-letter queues.
///
/// AWS credentials, region and endpoint come from the usual chain (`AWS_PROFILE`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, ...). Stack resources are found by stack name through CloudFormation.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The stack whose resources a command uses.
#[derive(Debug, Args)]
pub struct StackArg {
    /// CloudFormation stack name.
    #[arg(long, value_name = "NAME", default_value = "palisade-compliance")]
    pub stack: String,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check policy files locally (no AWS): print every problem with file, line and field.
    #[command(subcommand)]
    Validate(Validate),
    /// List violations, by state.
    Violations {
        /// Only violations in this state (default: every state).
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// List ledger entries of one type, newest first.
    Ledger {
        /// Record type.
        #[arg(long = "type", value_enum, default_value = "action")]
        record_type: TypeArg,
        /// At most this many entries.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..))]
        limit: i32,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// List incidents (ledger entries of type incident), newest first.
    Incidents {
        /// At most this many entries.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..))]
        limit: i32,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// Approve enforcement of an open violation whose policy needs approval.
    Approve {
        /// The violation id (`<policy>#<resource id>`).
        violation_id: String,
        /// Who approves (an email address).
        #[arg(long, value_name = "EMAIL", value_parser = email)]
        by: String,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// Undo an applied enforcement action from its ledger entry.
    Undo {
        /// The ledger id of the action (`action-...`).
        ledger_id: String,
        /// Who asks for the undo (an email address).
        #[arg(long, value_name = "EMAIL", value_parser = email)]
        by: String,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// Give an IAM user temporary permission to assume a role; revoked automatically when it expires.
    Grant {
        /// The IAM user name that receives the access.
        principal: String,
        /// The role the user may assume.
        #[arg(long, value_name = "ROLE_ARN", value_parser = role_arn)]
        role: String,
        /// When the access ends: an RFC 3339 time or a duration from now (30m, 4h, 3d, 2w).
        #[arg(long, value_name = "TIME|DURATION", value_parser = until)]
        until: Until,
        /// Who grants it (an email address).
        #[arg(long, value_name = "EMAIL", value_parser = email)]
        by: String,
        /// Who is reminded about the grant (default: the granter).
        #[arg(long, value_name = "EMAIL", value_parser = email)]
        owner: Option<String>,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// Revoke a grant now: delete its IAM policy and mark it revoked.
    Revoke {
        /// The grant id (`g-...`), as printed by `palisade grant`.
        grant_id: String,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// List, add or expire exceptions in the stack's config bucket (policies/exceptions.yaml).
    #[command(subcommand)]
    Exceptions(ExceptionsCmd),
    /// Print a short-lived (presigned) URL of the compliance dashboard, which lives in a private bucket.
    DashboardUrl {
        /// How long the link works (1m to 12h).
        #[arg(long, default_value = "15m", value_parser = crate::dashboard::expiry)]
        expires: std::time::Duration,
        /// Link to the same data as JSON (data.json) instead of the page.
        #[arg(long)]
        data: bool,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// Move every message of a function's dead-letter queue back to its queue.
    Redrive {
        /// The function's crate name, e.g. `enforce-stop-instance` or `pipeline-ingest`.
        function: String,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// Reproduce an incident: run the function's own binary here against the input the incident kept.
    ///
    /// The input is the record kept in the function's dead-letter queue (found by the incident's source id, never
    /// deleted while searching), a file quarantined by pipeline-extract, or a scheduled event rebuilt from its
    /// time. The binary runs with the deployed function's environment (lambda:GetFunctionConfiguration) and this
    /// shell's AWS credentials, region and endpoint, served one event by a local Lambda Runtime API. It runs in
    /// replay mode: a failure is only reported (no DLQ copy, no quarantine, no new incident) and the command exits
    /// 1 with the function's error class, code and summary. If the input goes through (after a fix), its effects
    /// are real: the DLQ message is deleted and the incident's outcome becomes `replayed`; exit 0.
    ///
    /// The binary must be a host build (`cargo build -p <crate>`), not the arm64 Lambda artifact from `sam build`.
    #[command(verbatim_doc_comment)]
    Replay {
        /// The incident's ledger id (`incident-...`), as the alert names it.
        incident_id: String,
        /// Where the function binaries are (default: beside this executable, then `$CARGO_TARGET_DIR/debug`).
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<std::path::PathBuf>,
        /// Print the outcome as JSON on stdout (the function's log still goes to stderr).
        #[arg(long)]
        json: bool,
        /// The stack whose ledger holds the incident (a pipeline's are in its tenant's stack). Without it, every
        /// stack with a ledger is searched, so the command an alert prints works as it is.
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
    },
}

/// `palisade validate ...`
#[derive(Debug, Subcommand)]
pub enum Validate {
    /// A policies file and, optionally, an exceptions file checked against it.
    Policies {
        /// The policies file (policies.yaml).
        file: std::path::PathBuf,
        /// The exceptions file (exceptions.yaml).
        exceptions: Option<std::path::PathBuf>,
    },
    /// A tenant's configuration (its samconfig.toml section) against infra/pipeline.yaml's parameter rules.
    Tenant {
        /// The section, e.g. `test-tenant-acme` (default: every section whose build template is the pipeline's).
        #[arg(long = "config-env")]
        config_env: Option<String>,
        /// The SAM configuration file.
        #[arg(long, default_value = "samconfig.toml")]
        samconfig: std::path::PathBuf,
        /// The pipeline template whose parameters set the rules.
        #[arg(long, default_value = "infra/pipeline.yaml")]
        template: std::path::PathBuf,
    },
}

/// `palisade exceptions ...`
#[derive(Debug, Subcommand)]
pub enum ExceptionsCmd {
    /// List every exception, numbered in file order.
    List {
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// Append an exception; it is validated against the stored policies before it is written.
    #[command(group = clap::ArgGroup::new("scope").required(true).args(["resource", "tag"]))]
    Add {
        /// The policy it excuses.
        #[arg(long)]
        policy: String,
        /// The one resource id it covers.
        #[arg(long, value_name = "ID")]
        resource: Option<String>,
        /// A tag every covered resource carries (repeat for several; all must match).
        #[arg(long, value_name = "KEY=VALUE", value_parser = tag)]
        tag: Vec<(String, String)>,
        /// Why it was agreed.
        #[arg(long)]
        reason: String,
        /// Who agreed to it (an email address).
        #[arg(long, value_name = "EMAIL", value_parser = email)]
        by: String,
        /// When it ends: a date (2027-01-31, the whole day), an RFC 3339 time or a duration from now (3d, 2w).
        #[arg(long, value_name = "DATE|TIME|DURATION")]
        expires: String,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
    /// End an exception now (its `expires` becomes the current time).
    Expire {
        /// Its number, as `palisade exceptions list` prints it.
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        number: u32,
        /// The stack.
        #[command(flatten)]
        stack: StackArg,
    },
}

fn tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Violation states on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Found; reminders and grace running.
    Open,
    /// An enforcement message was published.
    Enforcing,
    /// The action was applied.
    Enforced,
    /// No longer holds.
    Resolved,
    /// Enforcement was undone.
    Undone,
}

impl From<StateArg> for Status {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Open => Status::Open,
            StateArg::Enforcing => Status::Enforcing,
            StateArg::Enforced => Status::Enforced,
            StateArg::Resolved => Status::Resolved,
            StateArg::Undone => Status::Undone,
        }
    }
}

/// Ledger record types on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    /// Enforcement actions.
    Action,
    /// Undos.
    Undo,
    /// Failures that need a human.
    Incident,
    /// File pipeline effects.
    File,
}

impl From<TypeArg> for RecordType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Action => RecordType::Action,
            TypeArg::Undo => RecordType::Undo,
            TypeArg::Incident => RecordType::Incident,
            TypeArg::File => RecordType::File,
        }
    }
}

/// When a grant ends, as given: resolved against the clock when the command runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Until {
    /// An absolute time.
    At(DateTime<Utc>),
    /// A duration from now.
    In(palisade_policy::Duration),
}

impl Until {
    /// The end time, given the current time.
    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Until::At(t) => *t,
            Until::In(d) => now + d.as_delta(),
        }
    }
}

fn until(s: &str) -> Result<Until, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Until::At(t.with_timezone(&Utc)));
    }
    s.parse::<palisade_policy::Duration>().map(Until::In).map_err(|_| {
        format!("{s:?} is neither an RFC 3339 time (2027-01-31T18:00:00Z) nor a duration (30m, 4h, 3d, 2w)")
    })
}

fn email(s: &str) -> Result<String, String> {
    let ok = s.split_once('@').is_some_and(|(user, domain)| {
        !user.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
    }) && !s.chars().any(char::is_whitespace);
    if ok { Ok(s.to_owned()) } else { Err(format!("{s:?} is not an email address")) }
}

fn role_arn(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[5].strip_prefix("role/").is_some_and(|name| !name.is_empty());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("palisade").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn listings_take_filters_json_and_a_stack_with_a_default() {
        // GIVEN listing command lines WHEN parsed THEN the filters, output and stack are as given or defaulted
        let Command::Violations { state, json, stack } =
            parse(&["violations", "--state", "open", "--json"]).unwrap().command
        else {
            panic!("not violations")
        };
        assert_eq!((state, json, stack.stack.as_str()), (Some(StateArg::Open), true, "palisade-compliance"));
        let Command::Ledger { record_type, limit, json, stack } =
            parse(&["ledger", "--type", "undo", "--limit", "5", "--stack", "other"]).unwrap().command
        else {
            panic!("not ledger")
        };
        assert_eq!((record_type, limit, json, stack.stack.as_str()), (TypeArg::Undo, 5, false, "other"));
        assert!(matches!(parse(&["incidents"]).unwrap().command, Command::Incidents { limit: 50, json: false, .. }));
    }

    #[test]
    fn bad_values_are_refused_before_anything_runs() {
        // GIVEN command lines with one bad value each WHEN parsed THEN each is an error naming the value
        for (args, needle) in [
            (&["violations", "--state", "closed"][..], "closed"),
            (&["ledger", "--limit", "0"], "0"),
            (&["ledger", "--type", "audit"], "audit"),
            (&["approve", "p#i-1", "--by", "alice"], "not an email address"),
            (&["approve", "p#i-1"], "--by"),
            (&["undo", "action-1", "--by", "a@b"], "not an email address"),
            (&["grant", "bob", "--role", "arn:aws:s3:::x", "--until", "4h", "--by", "a@b.c"], "not an IAM role ARN"),
            (&["grant", "bob", "--role", "arn:aws:iam::1:role/r", "--until", "4x", "--by", "a@b.c"], "neither"),
            (&["validate", "policies"], "FILE"),
            (&["frobnicate"], "frobnicate"),
            (
                &["exceptions", "add", "--policy", "p", "--reason", "r", "--by", "a@b.c", "--expires", "3d"],
                "--resource",
            ),
            (
                &[
                    "exceptions",
                    "add",
                    "--policy",
                    "p",
                    "--tag",
                    "team",
                    "--reason",
                    "r",
                    "--by",
                    "a@b.c",
                    "--expires",
                    "3d",
                ],
                "KEY=VALUE",
            ),
            (&["exceptions", "expire", "0"], "0"),
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert!(err.to_string().contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn replay_takes_an_incident_and_an_optional_stack() {
        // GIVEN the command an alert prints, and one naming the stack and a binary folder
        let Command::Replay { incident_id, stack, bin_dir, json } = parse(&["replay", "incident-1"]).unwrap().command
        else {
            panic!("not replay")
        };
        // THEN the stack is left to the search, and the options are as given
        assert_eq!((incident_id.as_str(), stack, bin_dir, json), ("incident-1", None, None, false));
        let Command::Replay { stack, bin_dir, json, .. } =
            parse(&["replay", "incident-1", "--stack", "s", "--bin-dir", "/b", "--json"]).unwrap().command
        else {
            panic!("not replay")
        };
        assert_eq!((stack.as_deref(), bin_dir.as_deref(), json), (Some("s"), Some(std::path::Path::new("/b")), true));
        assert!(parse(&["replay"]).unwrap_err().to_string().contains("INCIDENT_ID"));
    }

    #[test]
    fn grant_until_takes_a_time_or_a_duration() {
        // GIVEN a grant until an absolute time and one for four hours
        let at = parse(&[
            "grant",
            "bob",
            "--role",
            "arn:aws:iam::123456789012:role/support",
            "--until",
            "2027-01-31T18:00:00Z",
            "--by",
            "alice@example.com",
        ])
        .unwrap();
        let dur =
            parse(&["grant", "bob", "--role", "arn:aws:iam::1:role/r", "--until", "4h", "--by", "a@b.c"]).unwrap();
        // WHEN resolved at a fixed time THEN the first is that time and the second four hours later
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let (Command::Grant { until: a, owner, .. }, Command::Grant { until: b, .. }) = (at.command, dur.command)
        else {
            panic!("not grant")
        };
        assert_eq!(a.resolve(now), "2027-01-31T18:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(b.resolve(now), "2026-11-23T14:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(owner, None);
    }
}
