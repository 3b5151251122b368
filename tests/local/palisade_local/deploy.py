"""Deploys an infra/ template to moto the way `sam package` + `sam deploy` deploy it to AWS.

1. Package: each function's local `CodeUri` (a crate folder) becomes a zip in an artifacts bucket. The zip's
   `bootstrap` execs the function's host build, so the Lambda service runs the real binary while the template
   stays byte-for-byte the one that deploys to AWS.
2. Translate: the SAM translator from PyPI turns the template into CloudFormation.
3. Create the stack in moto's CloudFormation.
4. Fill moto's gaps: moto's CloudFormation skips a few resource types and properties (SNS subscriptions as
   resources, S3 notification/versioning/public-access settings, queue policies, CloudWatch alarms, KMS key
   tags). Those are applied through the service APIs, from the same translated template, so there is still only
   one description of the stack.
"""
import copy
import io
import json
import os
import re
import stat
import time
import zipfile

import boto3
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

from . import cfn_yaml

ARTIFACTS_BUCKET = "palisade-local-artifacts"


def _bootstrap_zip(binary):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        z.writestr(info, f'#!/bin/sh\nexec "{binary}" "$@"\n')
    return buf.getvalue()


def package(template, template_dir, bin_dir, s3):
    """Uploads a bootstrap zip per function and points CodeUri at it (what `sam package` does)."""
    try:
        s3.create_bucket(Bucket=ARTIFACTS_BUCKET, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    # as `sam deploy`'s managed bucket is: private and encrypted (the compliance scan would rightly flag it otherwise)
    s3.put_public_access_block(Bucket=ARTIFACTS_BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_encryption(Bucket=ARTIFACTS_BUCKET, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    crates = {}
    for logical_id, res in template.get("Resources", {}).items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        code_uri = res["Properties"].get("CodeUri")
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            continue
        crate = os.path.basename(os.path.normpath(os.path.join(template_dir, code_uri)))
        binary = os.path.join(bin_dir, crate)
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"{logical_id}: no binary {binary}; build the workspace first (cargo build)")
        key = f"{crate}.zip"
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=_bootstrap_zip(binary))
        res["Properties"]["CodeUri"] = {"Bucket": ARTIFACTS_BUCKET, "Key": key}
        crates[logical_id] = crate
    return crates


def translate(template_path, parameters, bin_dir, session):
    """The CloudFormation template moto will create, and the crate behind each function."""
    sam = cfn_yaml.load(template_path)
    crates = package(sam, os.path.dirname(os.path.abspath(template_path)), bin_dir, session.client("s3"))
    cfn = transform(sam, parameters, ManagedPolicyLoader(session.client("iam")))
    return cfn, crates


class Stack:
    """A created stack: its template, parameters and physical ids, with a small intrinsic resolver."""

    def __init__(self, session, name, template, parameters):
        self.session = session
        self.name = name
        self.template = template
        defaults = {k: v.get("Default") for k, v in template.get("Parameters", {}).items() if "Default" in v}
        self.parameters = {**defaults, **parameters}
        cfn = session.client("cloudformation")
        self.physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
        }
        self.outputs = {
            o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])
        }

    def resources(self, type_):
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    # -- intrinsics, as far as the gap-filling needs them --
    def pseudo(self, name):
        return {
            "AWS::StackName": self.name,
            "AWS::Region": self.session.region_name,
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }.get(name)

    def ref(self, name):
        if name in self.parameters:
            return self.parameters[name]
        p = self.pseudo(name)
        if p is not None:
            return p
        return self.physical[name]

    def get_att(self, logical, attr):
        rtype = self.template["Resources"][logical]["Type"]
        phys = self.physical[logical]
        if rtype == "AWS::SQS::Queue" and attr == "Arn":
            sqs = self.session.client("sqs")
            return sqs.get_queue_attributes(QueueUrl=phys, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        if rtype == "AWS::SQS::Queue" and attr == "QueueUrl":
            return phys
        if rtype == "AWS::SQS::Queue" and attr == "QueueName":
            return phys.rsplit("/", 1)[-1]
        if rtype == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{phys}"
        if rtype == "AWS::SNS::Topic" and attr == "TopicArn":
            return phys
        if rtype == "AWS::DynamoDB::Table" and attr == "Arn":
            return f"arn:aws:dynamodb:{self.session.region_name}:123456789012:table/{phys}"
        if rtype == "AWS::KMS::Key" and attr == "Arn":
            return f"arn:aws:kms:{self.session.region_name}:123456789012:key/{phys}"
        if rtype == "AWS::Logs::LogGroup" and attr == "Arn":
            return f"arn:aws:logs:{self.session.region_name}:123456789012:log-group:{phys}:*"
        raise KeyError(f"GetAtt {logical}.{attr} is not resolved locally")

    def condition(self, name):
        return self.resolve(self.template.get("Conditions", {})[name])

    def resolve(self, v):
        if isinstance(v, list):
            return [self.resolve(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return self.ref(arg)
            if k == "Fn::GetAtt":
                return self.get_att(*arg)
            if k == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

                def sub(m):
                    key = m.group(1)
                    if key in extra:
                        return str(extra[key])
                    if "." in key:
                        return str(self.get_att(*key.split(".", 1)))
                    return str(self.ref(key))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if k == "Fn::ImportValue":
                name = self.resolve(arg)
                exports = self.session.client("cloudformation").list_exports()["Exports"]
                return next(e["Value"] for e in exports if e["Name"] == name)
            if k == "Fn::Join":
                return arg[0].join(str(x) for x in self.resolve(arg[1]))
            if k == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if k == "Fn::Equals":
                a, b = self.resolve(arg)
                return a == b
            if k == "Fn::Not":
                return not self.resolve(arg[0])
            if k == "Fn::FindInMap":
                m, a, b = self.resolve(arg)
                return self.template["Mappings"][m][a][b]
        return {k: self.resolve(x) for k, x in v.items()}

    def wanted(self, res):
        cond = res.get("Condition")
        return cond is None or self.condition(cond)


def fill_gaps(stack):
    """Applies what moto's CloudFormation skips, from the translated template; returns what was done."""
    s = stack.session
    done = []
    sns, sqs, s3 = s.client("sns"), s.client("sqs"), s.client("s3")
    for logical, res in stack.resources("AWS::SNS::Subscription").items():
        if not stack.wanted(res):
            continue
        p = stack.resolve(res["Properties"])
        if p["Protocol"] not in ("sqs", "lambda"):
            done.append(f"skipped {logical}: {p['Protocol']} endpoints cannot be reached locally")
            continue
        attrs = {}
        for key in ("FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy"):
            if key in p:
                val = p[key]
                attrs[key] = json.dumps(val) if isinstance(val, dict) else str(val).lower() if isinstance(val, bool) else str(val)
        sns.subscribe(TopicArn=p["TopicArn"], Protocol=p["Protocol"], Endpoint=p["Endpoint"], Attributes=attrs)
        done.append(f"subscribed {logical}")
    lam = s.client("lambda")
    for logical in stack.resources("AWS::Lambda::Function"):
        # CloudFormation stores every environment value as a string (a mapped `3` becomes "3"); moto keeps the
        # number, which strict clients (the SDK behind `palisade replay`) refuse to read back.
        name = stack.physical.get(logical)
        env = lam.get_function_configuration(FunctionName=name).get("Environment", {}).get("Variables", {}) if name else {}
        if any(not isinstance(v, str) for v in env.values()):
            strings = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}
            lam.update_function_configuration(FunctionName=name, Environment={"Variables": strings})
            done.append(f"environment of {logical} as strings")
    for logical, res in stack.resources("AWS::SQS::QueuePolicy").items():
        p = stack.resolve(res["Properties"])
        for q in p["Queues"]:
            sqs.set_queue_attributes(QueueUrl=q, Attributes={"Policy": json.dumps(p["PolicyDocument"])})
        done.append(f"queue policy {logical}")
    for logical, res in stack.resources("AWS::S3::Bucket").items():
        p = stack.resolve(res.get("Properties", {}))
        bucket = stack.physical[logical]
        if "VersioningConfiguration" in p:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]})
        if "PublicAccessBlockConfiguration" in p:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
        if "LifecycleConfiguration" in p:
            rules = []
            for r in p["LifecycleConfiguration"]["Rules"]:
                rule = {"ID": r.get("Id", "rule"), "Status": r["Status"], "Filter": {"Prefix": r.get("Prefix", "")}}
                if "ExpirationInDays" in r:
                    rule["Expiration"] = {"Days": int(r["ExpirationInDays"])}
                if "NoncurrentVersionExpiration" in r:
                    rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(r["NoncurrentVersionExpiration"]["NoncurrentDays"])}
                rules.append(rule)
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
        qcs = p.get("NotificationConfiguration", {}).get("QueueConfigurations", [])
        if qcs:
            conf = []
            for q in qcs:
                c = {"QueueArn": q["Queue"], "Events": [q["Event"]]}
                rules = q.get("Filter", {}).get("S3Key", {}).get("Rules")
                if rules:
                    c["Filter"] = {"Key": {"FilterRules": rules}}
                conf.append(c)
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": conf})
        if any(k in p for k in ("VersioningConfiguration", "PublicAccessBlockConfiguration", "LifecycleConfiguration")) or qcs:
            done.append(f"bucket settings {logical}")
    kms = s.client("kms")
    for logical, res in stack.resources("AWS::KMS::Key").items():
        # moto's CloudFormation stores KeyPolicy as a dict and then fails every call that checks it
        policy = stack.resolve(res.get("Properties", {}).get("KeyPolicy"))
        if policy and stack.wanted(res):
            kms.put_key_policy(KeyId=stack.physical[logical], PolicyName="default", Policy=json.dumps(policy))
        tags = stack.resolve(res.get("Properties", {}).get("Tags", []))
        if tags and stack.wanted(res):
            kms_tags = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in tags]
            kms.tag_resource(KeyId=stack.physical[logical], Tags=kms_tags)
            done.append(f"key tags {logical}")
    cloudwatch = s.client("cloudwatch")
    for logical, res in stack.resources("AWS::CloudWatch::Alarm").items():
        if not stack.wanted(res):
            continue
        p = stack.resolve(res["Properties"])
        alarm = {k: p[k] for k in (
            "AlarmName", "AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic", "Period",
            "EvaluationPeriods", "Threshold", "ComparisonOperator", "TreatMissingData", "AlarmActions", "OKActions",
        ) if k in p}
        for k in ("Period", "EvaluationPeriods"):
            alarm[k] = int(alarm[k])
        alarm["Threshold"] = float(alarm["Threshold"])
        cloudwatch.put_metric_alarm(**alarm)
        done.append(f"alarm {logical}")
    for logical, res in stack.resources("AWS::S3::BucketPolicy").items():
        p = stack.resolve(res["Properties"])
        doc = p["PolicyDocument"]
        # moto evaluates bucket policies, and the local endpoint is plain HTTP on 127.0.0.1: a TLS-only deny would
        # refuse every local call, so that one statement is left out here (and only here).
        tls_only = [st for st in doc["Statement"] if "aws:SecureTransport" in json.dumps(st.get("Condition", {}))]
        doc = {**doc, "Statement": [st for st in doc["Statement"] if st not in tls_only]}
        if doc["Statement"]:
            s3.put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(doc))
        done.append(f"bucket policy {logical}" + (" (TLS-only statement left out locally)" if tls_only else ""))
    return done


def _for_moto(template):
    """The template as moto's CloudFormation can create it; `fill_gaps` applies what is taken out here."""
    t = copy.deepcopy(template)
    for res in t.get("Resources", {}).values():
        if res.get("Type") == "AWS::KMS::Key":
            # moto reads key tags in the KMS API's shape (TagKey/TagValue), not CloudFormation's (Key/Value).
            res.get("Properties", {}).pop("Tags", None)
    return t


def deploy(session, template_path, stack_name, parameters, bin_dir):
    """Creates the stack in moto and returns it."""
    cfn_template, crates = translate(template_path, parameters, bin_dir, session)
    cfn = session.client("cloudformation")
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(_for_moto(cfn_template)),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.time() + 120
    while True:
        st = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        if st["StackStatus"].endswith("_COMPLETE") and "ROLLBACK" not in st["StackStatus"]:
            break
        if "FAILED" in st["StackStatus"] or "ROLLBACK" in st["StackStatus"] or time.time() > deadline:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events if "FAILED" in e["ResourceStatus"]]
            raise RuntimeError(f"stack {stack_name} is {st['StackStatus']}: {reasons}")
        time.sleep(0.2)
    stack = Stack(session, stack_name, cfn_template, parameters)
    stack.crates = crates
    stack.gaps = fill_gaps(stack)
    return stack
