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
    /// ... and stop them in one StopInstances call (per hibernate setting).
    stop: Coalescer<(String, bool), Result<String, AwsError>>,
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
        let client = ec2.clone();
        let stop = Coalescer::spawn(DESCRIBE_GROUP, move |items: Vec<(String, bool)>| {
            let ec2 = client.clone();
            async move { stop_all(&ec2, items).await }
        });
        Self { ec2, describe, stop }
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

/// Stops `items` (instance, hibernate) with one call per hibernate setting; returns each one's new state, in
/// order. A call that fails whole (one instance gone or not hibernatable since its re-check) is repeated one
/// instance at a time, so only the instance at fault fails.
async fn stop_all(ec2: &aws_sdk_ec2::Client, items: Vec<(String, bool)>) -> Vec<Result<String, AwsError>> {
    let mut results: Vec<Option<Result<String, AwsError>>> = items.iter().map(|_| None).collect();
    for hibernate in [false, true] {
        let ids: Vec<String> = items.iter().filter(|(_, h)| *h == hibernate).map(|(id, _)| id.clone()).collect();
        if ids.is_empty() {
            continue;
        }
        let mut states = match stop_ids(ec2, &ids, hibernate).await {
            Ok(states) => states,
            Err(e) if ids.len() == 1 => HashMap::from([(ids[0].clone(), Err(e))]),
            Err(_) => {
                let mut one_by_one = HashMap::new();
                for id in &ids {
                    let state = match stop_ids(ec2, std::slice::from_ref(id), hibernate).await {
                        Ok(mut s) => s.remove(id).unwrap_or_else(|| Ok("stopping".to_owned())),
                        Err(e) => Err(e),
                    };
                    one_by_one.insert(id.clone(), state);
                }
                one_by_one
            }
        };
        for (slot, (id, h)) in results.iter_mut().zip(&items) {
            if *h == hibernate {
                *slot = Some(states.remove(id).unwrap_or_else(|| Ok("stopping".to_owned())));
            }
        }
    }
    results.into_iter().map(|r| r.unwrap_or_else(|| Ok("stopping".to_owned()))).collect()
}

/// One StopInstances call: the state each instance it answered for is now in.
async fn stop_ids(
    ec2: &aws_sdk_ec2::Client,
    ids: &[String],
    hibernate: bool,
) -> Result<HashMap<String, Result<String, AwsError>>, AwsError> {
    let out = ec2
        .stop_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .hibernate(hibernate)
        .send()
        .await
        .map_err(|e| AwsError::new("ec2:StopInstances", e))?;
    tracing::info!(message = "Instances stopped in one call.", count = ids.len(), hibernate);
    Ok(out
        .stopping_instances()
        .iter()
        .filter_map(|c| {
            let state = c.current_state().and_then(|s| s.name()).map_or("stopping", |s| s.as_str());
            Some((c.instance_id()?.to_owned(), Ok(state.to_owned())))
        })
        .collect())
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
        let state: String = self.stop.call((t.id.clone(), p.hibernate), "ec2:StopInstances").await?;
        Ok(json!({"state": state}))
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
