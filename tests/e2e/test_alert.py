"""The alert function on the local stack: incidents announced on a stack's failures topic, and its dead-letter
queue alarms (evaluated locally, published in CloudWatch's own format), become one notification per incident on
the alerts topic, however often they are announced; a message SQS moved to a dead-letter queue after a crash gets
its incident too, and stays in the queue for redrive."""
import datetime as dt
import json
import time
import uuid

from boto3.dynamodb.conditions import Key

from palisade_local.messages import drain, enforce_command, envelope, publish, wait_for


class Topic:
    """A queue subscribed to a topic: every SNS notification it got, whole (subject included)."""

    def __init__(self, stack, topic_arn):
        self.sqs = stack.client("sqs")
        self.url = stack.subscribe_queue(topic_arn)
        self.got = []

    def poll(self):
        for m in drain(self.sqs, self.url, wait=0):
            sns = json.loads(m["Body"])
            try:
                sns["message"] = json.loads(sns["Message"])
            except ValueError:
                sns["message"] = None
            self.got.append(sns)
        return self.got

    def alerts(self, incident_id):
        return [n for n in self.poll() if (n["message"] or {}).get("kind") == "alert.incident"
                and n["message"]["payload"]["incident_id"] == incident_id]


def _incidents(stack, name):
    table = stack.session.resource("dynamodb").Table(stack.stacks[name].physical["LedgerTable"])
    return {i["id"]: i for i in table.query(IndexName="by-type",
                                           KeyConditionExpression=Key("record_type").eq("incident"))["Items"]}


def _alert_log_says(stack, name, text, incident_id):
    fn = stack.lambdas.function(f"{stack.stacks[name].name}-alert")
    return [line for line in open(fn.log_path, encoding="utf-8", errors="replace") if text in line and incident_id in line]


def test_a_poison_message_reported_twice_reaches_people_once_through_the_alert_function(stack):
    st = stack.stacks["compliance"]
    failures, alerts = Topic(stack, st.physical["FailuresTopic"]), Topic(stack, st.physical["AlertsTopic"])
    # GIVEN a command the stop-instance function refuses for good (it names another action)
    marker = f"bucket-{uuid.uuid4().hex[:8]}"
    env = envelope("action.command", "acme", enforce_command("block-public-bucket", f"v-{marker}", "s3-bucket", marker))

    # WHEN it is delivered twice: the runner keeps it twice and announces the same incident twice
    sns = stack.client("sns")
    publish(sns, st.physical["EnforceStopInstanceTopic"], env)
    announced = wait_for(lambda: [n for n in failures.poll() if (n["message"] or {}).get("kind") == "alert.incident"
                                  and n["message"]["payload"]["source_id"] == env["id"]],
                         what="the incident on the failures topic")
    incident_id = announced[0]["message"]["payload"]["incident_id"]
    publish(sns, st.physical["EnforceStopInstanceTopic"], env)
    wait_for(lambda: len([n for n in failures.poll() if (n["message"] or {}).get("kind") == "alert.incident"
                          and n["message"]["payload"]["incident_id"] == incident_id]) >= 2 or None,
             what="the second announcement of the same incident")

    # THEN people are told once, by the alert function, after it saw the repeat
    wait_for(lambda: _alert_log_says(stack, "compliance", "Alert already sent", incident_id),
             what="the alert function to skip the repeat")
    got = alerts.alerts(incident_id)
    assert len(got) == 1, got
    n = got[0]
    a, p = n["message"], n["message"]["payload"]
    assert a["correlation_id"] == env["correlation_id"] and a["tenant"] == "acme"
    assert p["function"] == f"{st.name}-enforce-stop-instance"
    assert (p["error_class"], p["error_code"], p["source_id"]) == ("permanent", "wrong_action", env["id"])
    assert p["kept_in"].endswith("enforce-stop-instance-dlq")
    assert p["replay"] == f"palisade replay {incident_id}"
    assert n["Subject"].startswith(f"Palisade incident: {st.name}-enforce-stop-instance wrong_action")
    for part in (p["function"], "tenant acme", "wrong_action", p["kept_in"], env["correlation_id"], incident_id):
        assert part in p["text"], (part, p["text"])
    assert marker not in json.dumps(a)
    assert _incidents(stack, "compliance")[incident_id]["outcome"] == "open"
    # AND both copies are kept in the dead-letter queue (taken out here, so that later tests find it empty)
    kept = []
    wait_for(lambda: kept.extend(drain(stack.client("sqs"), st.physical["EnforceStopInstanceDLQ"], wait=0))
             or len([m for m in kept if marker in m["Body"]]) >= 2 or None, what="both copies in the DLQ")


def test_a_redelivered_incident_is_still_announced_once(stack):
    st = stack.stacks["compliance"]
    alerts = Topic(stack, st.physical["AlertsTopic"])
    incident_id = f"incident-{uuid.uuid4().hex[:24]}"
    payload = {"incident_id": incident_id, "function": f"{st.name}-compliance-scan", "tenant": "acme",
               "error_class": "permanent", "error_code": "invalid_policy", "summary": "policies.yaml line 3: unknown field",
               "correlation_id": str(uuid.uuid4()), "source_id": "invocation/r-1", "kept_in": "scheduled invocation",
               "replay": f"palisade replay {incident_id}"}
    first = envelope("alert.incident", "acme", payload, correlation_id=payload["correlation_id"])
    sns = stack.client("sns")

    # WHEN the incident is announced, SNS delivers that message again, and the function announces it once more
    publish(sns, st.physical["FailuresTopic"], first)
    wait_for(lambda: alerts.alerts(incident_id), what="the notification")
    publish(sns, st.physical["FailuresTopic"], first)
    publish(sns, st.physical["FailuresTopic"], {**first, "id": str(uuid.uuid4())})

    # THEN there is still one notification: the repeat with a new message id was recognised by its incident
    wait_for(lambda: _alert_log_says(stack, "compliance", "Alert already sent", incident_id),
             what="the alert function to skip the repeat")
    time.sleep(1.0)
    got = alerts.alerts(incident_id)
    assert len(got) == 1, got
    assert "file" in got[0]["message"]["payload"] and got[0]["message"]["payload"]["text"]


def _alarm_state(stack, alarm):
    return stack.client("cloudwatch").describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"]


def test_a_message_dead_lettered_after_a_crash_gets_an_incident_and_one_alert_and_stays_for_redrive(stack):
    pipe = stack.stacks["pipeline"]
    sqs, sns = stack.client("sqs"), stack.client("sns")
    dlq = pipe.physical["PipelineExtractDLQ"]
    alarm = f"{pipe.name}-pipeline-extract-dlq"
    failures, alerts = Topic(stack, pipe.physical["FailuresTopic"]), Topic(stack, pipe.physical["AlertsTopic"])
    # GIVEN extract's dead-letter queue is empty and its alarm OK
    drain(sqs, dlq, wait=0)
    wait_for(lambda: _alarm_state(stack, alarm) == "OK", what="the dead-letter queue alarm to be OK")

    # WHEN SQS moves an accepted file's message there, as it does when extract crashed or timed out on it
    # maxReceiveCount times: the body as SNS delivered it, without the runner's palisade-* attributes
    key = f"incoming/{uuid.uuid4().hex[:6]}/crashed.pdf"
    inbox = pipe.physical["InboxBucket"]
    env = envelope("file.accepted", "acme", {"file_id": uuid.uuid4().hex, "bucket": inbox, "key": key, "version_id": None,
                                              "sha256": "0" * 64, "size": 1234, "file_type": "pdf"})
    body = json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": pipe.physical["FileAcceptedTopic"],
                       "Message": json.dumps(env), "Timestamp": dt.datetime.now(dt.timezone.utc).isoformat(),
                       "SignatureVersion": "1"})
    sqs.send_message(QueueUrl=dlq, MessageBody=body)

    # THEN the alarm goes off, notifying the failures topic the way CloudWatch does
    note = wait_for(lambda: [n for n in failures.poll() if (n["message"] or {}).get("AlarmName") == alarm
                             and n["message"]["NewStateValue"] == "ALARM"], what="the alarm notification")[0]
    assert note["Subject"] == f'ALARM: "{alarm}" in EU (Ireland)'
    assert note["message"]["Trigger"]["Dimensions"] == [{"value": f"{alarm}", "name": "QueueName"}]
    # AND the alert function records an incident in extract's name, naming the file, and tells people once
    p = wait_for(lambda: [n["message"]["payload"] for n in alerts.poll() if (n["message"] or {}).get("kind") == "alert.incident"
                          and n["message"]["payload"]["source_id"] == env["id"]], what="the alert")[0]
    assert p["function"] == f"{pipe.name}-pipeline-extract"
    assert (p["error_code"], p["tenant"], p["correlation_id"]) == ("max_receives_exceeded", "acme", env["correlation_id"])
    assert p["file"] == f"s3://{inbox}/{key}"
    assert p["kept_in"].rsplit("/", 1)[-1] == dlq.rsplit("/", 1)[-1]  # the queue's URL (moto has two spellings)
    assert p["replay"] == f"palisade replay {p['incident_id']}"
    incident = _incidents(stack, "pipeline")[p["incident_id"]]
    assert incident["function"] == p["function"] and incident["outcome"] == "open"

    # WHEN the alarm fires again later while the message still waits (a new state change)
    again = {**note["message"], "StateChangeTime": "2099-01-01T00:00:00.000+0000"}
    sns.publish(TopicArn=pipe.physical["FailuresTopic"], Message=json.dumps(again), Subject=note["Subject"])
    # THEN the message is recognised: still one incident and one notification
    wait_for(lambda: _alert_log_says(stack, "pipeline", "Alert already sent", p["incident_id"]),
             what="the alert function to recognise the message")
    assert len(alerts.alerts(p["incident_id"])) == 1
    # AND the message is still in the dead-letter queue, byte for byte, for redrive
    kept = wait_for(lambda: [m for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                                            WaitTimeSeconds=1).get("Messages", []) if m["Body"] == body],
                    what="the message in the dead-letter queue")
    assert len(kept) == 1
    drain(sqs, dlq, wait=0)
