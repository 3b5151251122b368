//! `stop-instance`: stops a running EC2 instance; undo starts it again if it was running before.

use std::collections::HashMap;

use aws_sdk_ec2::types::{Filter, InstanceStateName};
use palisade_shared::action::{Action, ActionError, Inspection, ResourceRef};
use palisade_shared::coalesce::Coalescer;
use palisade_shared::error::AwsError;
use serde::Deserialize;
use serde_json::{Value, json};

/// Parameters of `stop-instance`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StopInstanceParams {
    /// Hibernate instead of stopping, where the instance supports it.
    #[serde(default)]
    pub hibernate: bool,
}

/// An instance's state, `None` when it is gone (absent or terminated).
type Described = Result<Option<InstanceStateName>, AwsError>;

/// The action, holding its EC2 client.
pub struct StopInstance {
    ec2: aws_sdk_ec2::Client,
    /// The records of a batch re-check their instances in one DescribeInstances call.
    describe: Coalescer<String, Described>,
}

/// Instances re-checked per DescribeInstances call: a whole SQS batch.
const DESCRIBE_GROUP: usize = 10;

impl StopInstance {
    /// Builds the client once per cold start (inside the Tokio runtime: the grouped describe is a task).
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let ec2 = aws_sdk_ec2::Client::new(sdk);
        let client = ec2.clone();
        let describe = Coalescer::spawn(DESCRIBE_GROUP, move |ids: Vec<String>| {
            let ec2 = client.clone();
            async move { describe(&ec2, ids).await }
        });
        Self { ec2, describe }
    }
}

/// The states of `ids`, in order. By filter rather than by id: an id list fails whole when one instance is
/// gone, a filter simply leaves it out.
async fn describe(ec2: &aws_sdk_ec2::Client, ids: Vec<String>) -> Vec<Described> {
    let filter = Filter::builder().name("instance-id").set_values(Some(ids.clone())).build();
    let mut states = HashMap::new();
    let mut pages = ec2.describe_instances().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(out) => {
                for i in out.reservations().iter().flat_map(|r| r.instances()) {
                    if let (Some(id), Some(state)) = (i.instance_id(), i.state().and_then(|s| s.name())) {
                        states.insert(id.to_owned(), state.clone());
                    }
                }
            }
            Err(e) => {
                let e = AwsError::new("ec2:DescribeInstances", e);
                return ids.iter().map(|_| Err(e.clone())).collect();
            }
        }
    }
    ids.iter().map(|id| Ok(states.get(id).filter(|s| **s != InstanceStateName::Terminated).cloned())).collect()
}

fn is_running(state: &str) -> bool {
    matches!(state, "running" | "pending")
}

impl Action for StopInstance {
    const NAME: &'static str = "stop-instance";
    const PERMISSIONS: &'static [&'static str] = &["ec2:DescribeInstances", "ec2:StopInstances", "ec2:StartInstances"];
    type Params = StopInstanceParams;

    async fn inspect(&self, t: &ResourceRef) -> Result<Option<Inspection>, ActionError> {
        let Some(state) = self.describe.call(t.id.clone(), "ec2:DescribeInstances").await? else { return Ok(None) };
        Ok(Some(Inspection { violating: is_running(state.as_str()), state: json!({"state": state.as_str()}) }))
    }

    async fn apply(&self, t: &ResourceRef, p: &StopInstanceParams, _: &Inspection) -> Result<Value, ActionError> {
        let out = self
            .ec2
            .stop_instances()
            .instance_ids(&t.id)
            .hibernate(p.hibernate)
            .send()
            .await
            .map_err(|e| AwsError::new("ec2:StopInstances", e))?;
        let state = out.stopping_instances().first().and_then(|c| c.current_state()).and_then(|s| s.name());
        Ok(json!({"state": state.map_or("stopping", |s| s.as_str())}))
    }

    async fn undo(&self, t: &ResourceRef, before: &Value) -> Result<Value, ActionError> {
        let was = before.get("state").and_then(Value::as_str).ok_or_else(|| ActionError::State("no `state`".into()))?;
        if !is_running(was) {
            return Ok(before.clone());
        }
        let out = self
            .ec2
            .start_instances()
            .instance_ids(&t.id)
            .send()
            .await
            .map_err(|e| AwsError::new("ec2:StartInstances", e))?;
        let state = out.starting_instances().first().and_then(|c| c.current_state()).and_then(|s| s.name());
        Ok(json!({"state": state.map_or("pending", |s| s.as_str())}))
    }
}
