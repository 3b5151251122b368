"""Builds and publishes Palisade envelopes from Python, in the format the Rust shared crate defines."""
import datetime
import json
import time
import uuid


def envelope(kind, tenant, payload, correlation_id=None, schema_version=1, id=None):
    return {
        "schema_version": schema_version,
        "id": id or str(uuid.uuid4()),
        "correlation_id": correlation_id or str(uuid.uuid4()),
        "tenant": tenant,
        "kind": kind,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
        "payload": payload,
    }


def publish(sns, topic_arn, env_or_text):
    """Publishes an envelope (with routing attributes) or, for poison tests, any text."""
    if isinstance(env_or_text, str):
        return sns.publish(TopicArn=topic_arn, Message=env_or_text)["MessageId"]
    attrs = {
        "tenant": {"DataType": "String", "StringValue": env_or_text["tenant"]},
        "kind": {"DataType": "String", "StringValue": env_or_text["kind"]},
        "schema_version": {"DataType": "Number", "StringValue": str(env_or_text["schema_version"])},
    }
    return sns.publish(TopicArn=topic_arn, Message=json.dumps(env_or_text), MessageAttributes=attrs)["MessageId"]


def enforce_command(action, violation_id, resource_kind, resource_id, mode="enforce", policy="test-policy", params=None,
                    approved_by=None, attributes=None):
    resource = {"kind": resource_kind, "id": resource_id}
    if attributes:
        resource["attributes"] = attributes
    return {"command": "enforce", "action": action, "violation_id": violation_id, "policy": policy,
            "resource": resource, "params": params or {}, "mode": mode, "approved_by": approved_by}


def wait_for(predicate, timeout=30, interval=0.2, what="condition"):
    """Polls until `predicate()` returns something truthy; returns it, or fails naming what was awaited."""
    deadline = time.time() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def drain(sqs, queue_url, wait=1):
    """Every message currently in a queue (received and deleted)."""
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                  MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            return out
        out.extend(got)
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
