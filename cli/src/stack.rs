//! A stack's resources by logical id, read once per command with DescribeStackResources: no hand-kept names.

use std::collections::BTreeMap;

use palisade_shared::error::AwsError;

use crate::CliError;

/// One resource of the stack.
#[derive(Clone, Debug)]
pub struct Resource {
    /// The CloudFormation type, e.g. `AWS::SNS::Topic`.
    pub kind: String,
    /// The physical id: a table or bucket name, a topic ARN, a queue URL.
    pub physical: String,
}

/// The resources of one stack.
#[derive(Debug)]
pub struct Stack {
    /// The stack name.
    pub name: String,
    by_logical: BTreeMap<String, Resource>,
}

impl Stack {
    /// Reads the stack's resources.
    pub async fn load(cfn: &aws_sdk_cloudformation::Client, name: &str) -> Result<Self, CliError> {
        let out = cfn.describe_stack_resources().stack_name(name).send().await.map_err(|e| {
            let e = AwsError::new("cloudformation:DescribeStackResources", e);
            if e.code == "ValidationError" {
                CliError::Input(format!("stack {name:?} does not exist (check --stack, AWS_REGION and credentials)"))
            } else {
                e.into()
            }
        })?;
        let by_logical = out
            .stack_resources
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| {
                let logical = r.logical_resource_id?;
                let physical = r.physical_resource_id?;
                Some((logical, Resource { kind: r.resource_type.unwrap_or_default(), physical }))
            })
            .collect();
        Ok(Self { name: name.to_owned(), by_logical })
    }

    /// The physical id of a logical resource.
    pub fn physical(&self, logical: &str) -> Result<&str, CliError> {
        self.by_logical.get(logical).map(|r| r.physical.as_str()).ok_or_else(|| {
            CliError::Input(format!("stack {:?} has no resource {logical} (is it the right stack?)", self.name))
        })
    }

    /// The one resource of `kind` whose physical id ends with the name `<stack>-<suffix>` (topic ARNs end in
    /// `:<name>`, queue URLs in `/<name>`).
    pub fn named(&self, kind: &str, suffix: &str) -> Option<&str> {
        let name = format!("{}-{suffix}", self.name);
        self.by_logical.values().find_map(|r| {
            let last = r.physical.rsplit([':', '/']).next().unwrap_or_default();
            (r.kind == kind && last == name).then_some(r.physical.as_str())
        })
    }
}

/// The names of every stack that exists now (created or updated, not deleted or failed), for commands that
/// search stacks when none is named.
pub async fn live_stacks(cfn: &aws_sdk_cloudformation::Client) -> Result<Vec<String>, CliError> {
    use aws_sdk_cloudformation::types::StackStatus;
    let live = [
        StackStatus::CreateComplete,
        StackStatus::UpdateComplete,
        StackStatus::UpdateRollbackComplete,
        StackStatus::ImportComplete,
    ];
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let out = cfn
            .list_stacks()
            .set_stack_status_filter(Some(live.to_vec()))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::new("cloudformation:ListStacks", e))?;
        names.extend(out.stack_summaries.unwrap_or_default().into_iter().filter_map(|s| s.stack_name));
        token = out.next_token;
        if token.is_none() {
            break;
        }
    }
    names.sort();
    Ok(names)
}
