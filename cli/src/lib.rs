//! `palisade`, the operator CLI.
//!
//! Each subcommand is one small function over the same shared types the functions use (`ViolationStore`,
//! `DynamoLedger`, `ActionCommand`, `palisade-policy`), so the CLI cannot disagree with them about an item's
//! shape. Stack resources are found through CloudFormation by stack name. Exit codes: 0 done, 1 failed (the
//! reason on stderr), 2 bad command line.
#![deny(missing_docs)]

pub mod args;
pub mod compliance;
pub mod dashboard;
pub mod exceptions;
pub mod grants;
pub mod redrive;
pub mod replay;
pub mod stack;
pub mod table;
pub mod tenant;
pub mod validate;

use std::io::Write;

use palisade_shared::error::AwsError;

pub use args::{Cli, Command};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input names something that does not exist or is in the wrong state.
    #[error("{0}")]
    Input(String),
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Something else failed (I/O, a stored item that does not decode).
    #[error("{0}")]
    Other(String),
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Other(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Runs one parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        // pure: no AWS configuration is loaded, so it runs anywhere (CI, a laptop without credentials)
        Command::Validate(args::Validate::Policies { file, exceptions }) => {
            validate_files(&file, exceptions.as_deref())
        }
        Command::Validate(args::Validate::Tenant { config_env, samconfig, template }) => {
            validate_tenant(&samconfig, &template, config_env.as_deref())
        }
        // its own exit code: 1 when the failure is reproduced
        Command::Replay { incident_id, bin_dir, json, stack } => {
            let bin_dir = bin_dir.as_deref();
            replay::run(replay::ReplayArgs { incident_id: &incident_id, stack: stack.as_deref(), bin_dir, json }).await
        }
        aws => run_aws(aws).await.map(|()| 0),
    }
}

/// The operator's SDK configuration: `aws-config`'s full chain (profiles, SSO, a credential process, the instance
/// metadata service), which the functions leave out, over Palisade's HTTP client.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(palisade_shared::https::sdk_http_client())
        .load()
        .await
}

async fn run_aws(command: Command) -> Result<(), CliError> {
    let sdk = sdk_config().await;
    let clients = Clients::new(&sdk);
    match command {
        Command::Validate(_) | Command::Replay { .. } => Ok(()), // handled by `run`
        Command::Violations { state, json, stack } => {
            compliance::violations(&clients, &stack.stack, state.map(Into::into), json).await
        }
        Command::Ledger { record_type, limit, json, stack } => {
            compliance::ledger(&clients, &stack.stack, record_type.into(), limit, json).await
        }
        Command::Incidents { limit, json, stack } => {
            compliance::ledger(&clients, &stack.stack, palisade_shared::ledger::RecordType::Incident, limit, json).await
        }
        Command::Approve { violation_id, by, stack } => {
            compliance::approve(&clients, &stack.stack, &violation_id, &by).await
        }
        Command::Undo { ledger_id, by, stack } => compliance::undo(&clients, &stack.stack, &ledger_id, &by).await,
        Command::Grant { principal, role, until, by, owner, stack } => {
            let expires_at = until.resolve(chrono::Utc::now());
            let owner = owner.unwrap_or_else(|| by.clone());
            let req = grants::GrantRequest { principal, role, expires_at, granted_by: by, owner };
            grants::grant(&clients, &stack.stack, &req).await
        }
        Command::Revoke { grant_id, stack } => grants::revoke(&clients, &stack.stack, &grant_id).await,
        Command::Exceptions(cmd) => match cmd {
            args::ExceptionsCmd::List { json, stack } => exceptions::list(&clients, &stack.stack, json).await,
            args::ExceptionsCmd::Add { policy, resource, tag, reason, by, expires, stack } => {
                let expires = exceptions::expires_text(&expires, chrono::Utc::now()).map_err(CliError::Input)?;
                let new = exceptions::NewException {
                    policy,
                    resource,
                    tags: tag.into_iter().collect(),
                    reason,
                    granted_by: by,
                    expires,
                };
                exceptions::add(&clients, &stack.stack, &new).await
            }
            args::ExceptionsCmd::Expire { number, stack } => {
                exceptions::expire_now(&clients, &stack.stack, number as usize).await
            }
        },
        Command::Redrive { function, stack } => redrive::redrive(&clients, &stack.stack, &function).await,
        Command::DashboardUrl { expires, data, stack } => dashboard::url(&clients, &stack.stack, expires, data).await,
    }
}

fn validate_tenant(samconfig: &std::path::Path, template: &std::path::Path, env: Option<&str>) -> Result<u8, CliError> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| CliError::Input(format!("cannot read {}: {e}", p.display())))
    };
    let (cfg, tpl) = (read(samconfig)?, read(template)?);
    let (cfg_name, tpl_name) = (samconfig.display().to_string(), template.display().to_string());
    let report = tenant::validate((&cfg, &cfg_name), (&tpl, &tpl_name), env);
    print!("{}", report.summary);
    let mut err = std::io::stderr().lock();
    for e in &report.errors {
        let _ = writeln!(err, "{e}");
    }
    Ok(report.exit_code())
}

fn validate_files(file: &std::path::Path, exceptions: Option<&std::path::Path>) -> Result<u8, CliError> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| CliError::Input(format!("cannot read {}: {e}", p.display())))
    };
    let policies = read(file)?;
    let ex = exceptions.map(|p| read(p).map(|src| (src, p.display().to_string()))).transpose()?;
    let name = file.display().to_string();
    let report =
        validate::validate((&policies, &name), ex.as_ref().map(|(s, n)| (s.as_str(), n.as_str())), chrono::Utc::now());
    print!("{}", report.summary);
    let mut err = std::io::stderr().lock();
    for e in &report.errors {
        let _ = writeln!(err, "{e}");
    }
    Ok(report.exit_code())
}

/// The SDK clients, built once.
#[derive(Debug)]
pub struct Clients {
    /// CloudFormation, for the stack's resources.
    pub cfn: aws_sdk_cloudformation::Client,
    /// DynamoDB.
    pub db: aws_sdk_dynamodb::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// S3 (path-style under a custom endpoint).
    pub s3: aws_sdk_s3::Client,
    /// SNS.
    pub sns: aws_sdk_sns::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    /// From the loaded SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            cfn: aws_sdk_cloudformation::Client::new(sdk),
            db: aws_sdk_dynamodb::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            s3: palisade_shared::aws::s3(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
        }
    }

    /// The stack's resources.
    pub async fn stack(&self, name: &str) -> Result<stack::Stack, CliError> {
        stack::Stack::load(&self.cfn, name).await
    }
}
