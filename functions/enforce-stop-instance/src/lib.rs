//! `stop-instance`: stops a running EC2 instance; undo starts it again if it was running before.

use aws_sdk_ec2::types::InstanceStateName;
use palisade_shared::action::{Action, ActionError, Inspection, ResourceRef};
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

/// The action, holding its EC2 client.
pub struct StopInstance {
    ec2: aws_sdk_ec2::Client,
}

impl StopInstance {
    /// Builds the client once per cold start.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self { ec2: aws_sdk_ec2::Client::new(sdk) }
    }
}

fn is_running(state: &str) -> bool {
    matches!(state, "running" | "pending")
}

impl Action for StopInstance {
    const NAME: &'static str = "stop-instance";
    const PERMISSIONS: &'static [&'static str] = &["ec2:DescribeInstances", "ec2:StopInstances", "ec2:StartInstances"];
    type Params = StopInstanceParams;

    async fn inspect(&self, t: &ResourceRef) -> Result<Option<Inspection>, ActionError> {
        let out = match self.ec2.describe_instances().instance_ids(&t.id).send().await {
            Ok(o) => o,
            Err(e) => {
                let e = AwsError::new("ec2:DescribeInstances", e);
                return if e.is_code("InvalidInstanceID.NotFound") { Ok(None) } else { Err(e.into()) };
            }
        };
        let instance = out.reservations().iter().flat_map(|r| r.instances()).find(|i| i.instance_id() == Some(&t.id));
        let Some(state) = instance.and_then(|i| i.state()).and_then(|s| s.name()) else { return Ok(None) };
        if *state == InstanceStateName::Terminated {
            return Ok(None);
        }
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
