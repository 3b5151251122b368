"""One local stack (moto on a free port, the infra/ templates, the real binaries) per test session.

Tests share the stack but not state: each creates its own resources and ids, and asserts only on those.
"""
import json
import os
import uuid

import pytest

from palisade_local.local import LocalStack
from palisade_local.messages import drain, wait_for

ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "artifacts")


@pytest.fixture(scope="session")
def stack():
    work = os.path.join(ARTIFACTS, "e2e")
    os.makedirs(work, exist_ok=True)
    s = LocalStack(templates=("compliance",), work_dir=work)
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
        seen = []

        def find(self, pred, timeout=30):
            def look():
                for m in drain(sqs, url, wait=0):
                    self.seen.append(json.loads(json.loads(m["Body"])["Message"]))
                return [a for a in self.seen if pred(a)]
            return wait_for(look, timeout=timeout, what="an alert")

    return Watch()
