"""One object for a whole local stack: moto, the deployed templates and the Lambda service."""
import json
import os
import shutil
import subprocess
import tempfile

import boto3

from . import deploy
from .alarms import AlarmEvaluator
from .lambda_service import LambdaService
from .moto_server import MotoServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def bin_dir():
    """Where `cargo build` put the host binaries."""
    if os.environ.get("PALISADE_BIN_DIR"):
        return os.environ["PALISADE_BIN_DIR"]
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, capture_output=True, check=True, text=True
    )
    return os.path.join(json.loads(meta.stdout)["target_directory"], "debug")


class LocalStack:
    def __init__(self, templates=("compliance",), stack_prefix="palisade", work_dir=None, parameters=None, prepare=None):
        self.templates = templates
        self.stack_prefix = stack_prefix
        self.parameters = parameters or {}
        # called with the session after moto starts and before the stacks are created: creates what a real
        # account would already have (e.g. an operator's secret) and returns extra parameters per template
        self.prepare = prepare
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="palisade-local-")
        os.makedirs(self.work_dir, exist_ok=True)
        self.moto = MotoServer(log_path=os.path.join(self.work_dir, "moto.log"))
        self.stacks = {}
        self.lambdas = None
        self.alarms = None

    def start(self):
        self.moto.start()
        env = self.moto.env()
        self.session = boto3.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )
        # every boto3 client of this session talks to our moto
        os.environ.update(env)
        bins = bin_dir()
        extra = self.prepare(self.session) if self.prepare else {}
        for t in self.templates:
            params = {"Environment": "local", **self.parameters.get(t, {}), **extra.get(t, {})}
            name = f"{self.stack_prefix}-{t}" + (f"-{params['Tenant']}" if "Tenant" in params else "")
            self.stacks[t] = deploy.deploy(self.session, os.path.join(ROOT, "infra", f"{t}.yaml"), name, params, bins)
        self.lambdas = LambdaService(self.session, env, self.work_dir).discover().start()
        # moto keeps the alarms but never evaluates them: dead-letter queue alarms are evaluated here
        self.alarms = AlarmEvaluator(self.session).start()
        return self

    def client(self, service):
        return self.session.client(service)

    def subscribe_queue(self, topic_arn, name=None):
        """A new queue subscribed to `topic_arn`, as an email or chat integration would be; returns its URL."""
        import uuid
        sqs, sns = self.client("sqs"), self.client("sns")
        url = sqs.create_queue(QueueName=name or f"watch-{uuid.uuid4().hex[:10]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
        return url

    def stop(self):
        if self.alarms:
            self.alarms.stop()
        if self.lambdas:
            self.lambdas.stop()
        self.moto.stop()

    def cleanup(self):
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
