"""One local stack (moto on a free port, the infra/ templates, the real binaries) per test session.

Tests share the stack but not state: each creates its own resources and ids, and asserts only on those.
"""
import json
import os
import uuid

import pytest

from palisade_local.local import LocalStack
from palisade_local.messages import drain, wait_for
from palisade_local.receiver import Receiver

TENANT = "acme"
SECRET = "test-signing-key-" + uuid.uuid4().hex

ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "artifacts")


@pytest.fixture(scope="session")
def receiver():
    r = Receiver(SECRET)
    yield r
    r.stop()


@pytest.fixture(scope="session")
def stack(receiver):
    work = os.path.join(ARTIFACTS, "e2e")
    os.makedirs(work, exist_ok=True)

    def prepare(session):
        # what an operator creates once per tenant, outside the template: the signing key for its target
        arn = session.client("secretsmanager").create_secret(Name=f"palisade/{TENANT}/target", SecretString=SECRET)["ARN"]
        return {"pipeline": {"Tenant": TENANT, "Target": receiver.url, "TargetSecretArn": arn,
                             "MaxFileBytes": str(2 * 1024 * 1024)}}

    # the dashboard counts this tenant's pipeline: the stack name LocalStack gives the pipeline template
    s = LocalStack(templates=("compliance", "pipeline"), work_dir=work, prepare=prepare,
                   parameters={"compliance": {"TenantStacks": f"palisade-pipeline-{TENANT}"}})
    s.start()
    yield s
    s.stop()


@pytest.fixture
def alerts(stack):
    """A queue subscribed to the alerts topic, as an on-call integration would be."""
    sqs, sns = stack.client("sqs"), stack.client("sns")
    url = sqs.create_queue(QueueName=f"alerts-watch-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=stack.stacks["compliance"].physical["AlertsTopic"], Protocol="sqs", Endpoint=arn)

    class Watch:
        def __init__(self):
            self.seen = []  # per test: alerts already drained from the queue

        def find(self, pred, timeout=30):
            def look():
                for m in drain(sqs, url, wait=0):
                    msg = json.loads(json.loads(m["Body"])["Message"])
                    # incident notifications; the alert function's own alarms arrive in CloudWatch's format
                    if msg.get("kind") == "alert.incident":
                        self.seen.append(msg)
                return [a for a in self.seen if pred(a)]
            return wait_for(look, timeout=timeout, what="an alert")

    return Watch()
