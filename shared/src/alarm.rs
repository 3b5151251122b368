//! What a stack's failures topic carries: incidents announced by its functions, and the notifications CloudWatch
//! publishes when one of the stack's alarms changes state (dead-letter queue depth, function errors, throttles).
//!
//! CloudWatch's message is its own JSON, not an envelope, so it is decoded here, like every other AWS format.
//! Decoding reads only what an alert needs, and tolerates what CloudWatch leaves out or sets to `null` (an alarm
//! without a description, a metric-math alarm without `MetricName`).

use serde::Deserialize;
use uuid::Uuid;

use crate::envelope::{Envelope, EnvelopeError, safe_json_error};
use crate::events::{Inbound, Meta};
use crate::incident::Alert;

/// An alarm's state, as CloudWatch names it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub enum AlarmState {
    /// The metric is within its threshold.
    #[serde(rename = "OK")]
    Ok,
    /// The metric crossed its threshold.
    #[serde(rename = "ALARM")]
    Alarm,
    /// Not enough data to decide.
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

/// One dimension of the alarm's metric (CloudWatch writes these two keys in lower case).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Dimension {
    /// e.g. `QueueName`, `FunctionName`.
    pub name: String,
    /// e.g. the queue's or the function's name.
    pub value: String,
}

/// The metric an alarm watches.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Trigger {
    /// e.g. `ApproximateNumberOfMessagesVisible`, `Errors`.
    #[serde(default)]
    pub metric_name: Option<String>,
    /// e.g. `AWS/SQS`, `AWS/Lambda`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The metric's dimensions.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub dimensions: Vec<Dimension>,
}

impl Trigger {
    /// The value of dimension `name`.
    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.dimensions.iter().find(|d| d.name == name).map(|d| d.value.as_str())
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Dimension>, D::Error> {
    Ok(Option::<Vec<Dimension>>::deserialize(d)?.unwrap_or_default())
}

/// The message CloudWatch publishes to an alarm's SNS actions on a state change.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AlarmNotification {
    /// The alarm's name (ours are `<stack>-<crate>-dlq`, `-errors`, `-throttles`).
    pub alarm_name: String,
    /// What the alarm means, as the template describes it.
    #[serde(default)]
    pub alarm_description: Option<String>,
    /// The alarm's ARN.
    #[serde(default)]
    pub alarm_arn: Option<String>,
    /// The state it entered.
    pub new_state_value: AlarmState,
    /// The state it left.
    #[serde(default)]
    pub old_state_value: Option<String>,
    /// When, as CloudWatch writes it (`2026-11-23T10:00:00.000+0000`); with the name, it identifies the change.
    #[serde(default)]
    pub state_change_time: Option<String>,
    /// The watched metric.
    #[serde(default)]
    pub trigger: Trigger,
}

impl AlarmNotification {
    /// Parses CloudWatch's JSON; errors name fields, never values.
    pub fn decode(body: &str) -> Result<Self, EnvelopeError> {
        serde_json::from_str(body).map_err(|e| EnvelopeError::Invalid(safe_json_error(&e)))
    }

    /// Stable per state change, so a redelivered notification is recognised.
    pub fn change_id(&self) -> Uuid {
        let ident = format!(
            "cloudwatch-alarm/{}/{}/{}",
            self.alarm_arn.as_deref().unwrap_or(&self.alarm_name),
            self.state_change_time.as_deref().unwrap_or(""),
            match self.new_state_value {
                AlarmState::Ok => "OK",
                AlarmState::Alarm => "ALARM",
                AlarmState::InsufficientData => "INSUFFICIENT_DATA",
            }
        );
        Uuid::new_v5(&Uuid::NAMESPACE_URL, ident.as_bytes())
    }
}

/// One record of the failures topic.
#[derive(Clone, Debug)]
pub enum Failure {
    /// An incident a function recorded and announced.
    Incident(Envelope<Alert>),
    /// A CloudWatch alarm changed state.
    Alarm(AlarmNotification),
}

impl Inbound for Failure {
    fn decode(body: &str) -> Result<Self, EnvelopeError> {
        let v: serde_json::Value =
            serde_json::from_str(body).map_err(|e| EnvelopeError::NotJson(safe_json_error(&e)))?;
        if v.get("AlarmName").is_some() {
            let alarm = serde_json::from_value(v).map_err(|e| EnvelopeError::Invalid(safe_json_error(&e)))?;
            return Ok(Failure::Alarm(alarm));
        }
        Envelope::decode(body).map(Failure::Incident)
    }

    fn meta(&self) -> Meta {
        match self {
            Failure::Incident(env) => env.meta(),
            Failure::Alarm(a) => {
                let id = a.change_id();
                Meta { id: id.to_string(), tenant: None, correlation_id: id, kind: "cloudwatch.alarm", file: None }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::unwrap_sns;

    /// What CloudWatch publishes for one of our dead-letter queue alarms (layout of AWS's own sample,
    /// aws-lambda-go events/testdata/cloudwatch-alarm-sns-payload-single-metric.json), inside SNS inside SQS.
    fn dlq_alarm(state: &str) -> String {
        let message = serde_json::json!({
            "AlarmName": "palisade-pipeline-acme-pipeline-extract-dlq",
            "AlarmDescription": "Messages wait in the dead-letter queue.",
            "AWSAccountId": "123456789012",
            "AlarmConfigurationUpdatedTimestamp": "2026-11-23T09:00:00.000+0000",
            "NewStateValue": state,
            "NewStateReason": "Threshold Crossed: 1 out of the last 1 datapoints [1.0 (23/11/26 10:00:00)] was greater than the threshold (0.0) (minimum 1 datapoint for OK -> ALARM transition).",
            "StateChangeTime": "2026-11-23T10:00:00.123+0000",
            "Region": "EU (Ireland)",
            "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:palisade-pipeline-acme-pipeline-extract-dlq",
            "OldStateValue": "OK",
            "OKActions": ["arn:aws:sns:eu-west-1:123456789012:palisade-pipeline-acme-failures"],
            "AlarmActions": ["arn:aws:sns:eu-west-1:123456789012:palisade-pipeline-acme-failures"],
            "InsufficientDataActions": [],
            "Trigger": {
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Namespace": "AWS/SQS",
                "StatisticType": "Statistic",
                "Statistic": "MAXIMUM",
                "Unit": null,
                "Dimensions": [{"value": "palisade-pipeline-acme-pipeline-extract-dlq", "name": "QueueName"}],
                "Period": 300,
                "EvaluationPeriods": 1,
                "ComparisonOperator": "GreaterThanThreshold",
                "Threshold": 0.0,
                "TreatMissingData": "notBreaching",
                "EvaluateLowSampleCountPercentile": ""
            }
        });
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:palisade-pipeline-acme-failures",
            "Subject": "ALARM: \"palisade-pipeline-acme-pipeline-extract-dlq\" in EU (Ireland)",
            "Message": message.to_string(),
            "Timestamp": "2026-11-23T10:00:00.200Z",
            "SignatureVersion": "1",
        })
        .to_string()
    }

    fn decode(sqs_body: &str) -> Failure {
        Failure::decode(&unwrap_sns(sqs_body).unwrap()).unwrap()
    }

    #[test]
    fn cloudwatch_alarm_notifications_decode() {
        let Failure::Alarm(a) = decode(&dlq_alarm("ALARM")) else { panic!("not an alarm") };
        assert_eq!(a.new_state_value, AlarmState::Alarm);
        assert_eq!(a.trigger.namespace.as_deref(), Some("AWS/SQS"));
        assert_eq!(a.trigger.dimension("QueueName"), Some("palisade-pipeline-acme-pipeline-extract-dlq"));
        assert_eq!(a.trigger.dimension("FunctionName"), None);
    }

    #[test]
    fn a_state_change_keeps_its_id_across_redelivery_and_differs_from_the_next() {
        let alarm = decode(&dlq_alarm("ALARM"));
        assert_eq!(alarm.meta(), decode(&dlq_alarm("ALARM")).meta());
        assert_ne!(alarm.meta().id, decode(&dlq_alarm("OK")).meta().id);
        assert_eq!(alarm.meta().kind, "cloudwatch.alarm");
    }

    #[test]
    fn nulls_and_missing_fields_of_other_alarm_kinds_are_tolerated() {
        let body = r#"{"AlarmName":"x","AlarmDescription":null,"NewStateValue":"OK","Trigger":{"Dimensions":null}}"#;
        let Failure::Alarm(a) = Failure::decode(body).unwrap() else { panic!("not an alarm") };
        assert_eq!(a.alarm_description, None);
        assert!(a.trigger.dimensions.is_empty());
    }

    #[test]
    fn incidents_decode_as_envelopes_and_anything_else_is_refused() {
        let alert = Alert {
            incident_id: "incident-1".into(),
            function: "f".into(),
            tenant: "acme".into(),
            error_class: crate::error::Class::Permanent,
            error_code: "invalid_json".into(),
            summary: "s".into(),
            correlation_id: Uuid::new_v4(),
            source_id: "m-1".into(),
            file: None,
            kept_in: "q".into(),
            replay: "palisade replay incident-1".into(),
            text: String::new(),
        };
        let env = Envelope::new("acme".parse().unwrap(), alert);
        let Failure::Incident(back) = Failure::decode(&env.to_json().unwrap()).unwrap() else {
            panic!("not an incident")
        };
        assert_eq!(back.payload.incident_id, "incident-1");
        assert_eq!(Failure::decode("not json").unwrap_err().code(), "invalid_json");
        assert_eq!(Failure::decode(r#"{"AlarmName":"x"}"#).unwrap_err().code(), "invalid_envelope");
        assert_eq!(Failure::decode(r#"{"hello":1}"#).unwrap_err().code(), "invalid_envelope");
    }
}
