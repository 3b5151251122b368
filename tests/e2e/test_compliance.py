"""Compliance enforcement end to end on the local stack: real resources in moto, the real scan, sweep and
enforce-* binaries, simulated days through the scheduled events' time, undo from the ledger."""
import datetime as dt
import json
import uuid

import pytest
from boto3.dynamodb.conditions import Key

from palisade_local.messages import drain, envelope, publish, wait_for

UTC = dt.timezone.utc

POLICIES = """
settings:
  fallback-owner: security@example.com
  digest-period: 1d
  max-enforcements-per-run: 50
  max-enforcements-percent: 100
policies:
  - name: s3-public-access-block
    description: Buckets must block public access.
    resource: s3-bucket
    check: { type: public-access-block }
    severity: critical
    reminders: 1
    reminder-interval: 1d
    grace: 1d
    action: { type: block-public-bucket }
  - name: s3-default-encryption
    description: Buckets must encrypt by default.
    resource: s3-bucket
    check: { type: default-encryption }
    severity: medium
    reminders: 0
    grace: 1d
    action: { type: enable-bucket-encryption, params: { algorithm: AES256 } }
  - name: ec2-stale-instance
    description: No instance runs for more than 30 days.
    resource: ec2-instance
    check: { type: instance-max-age, max-age-days: 30 }
    severity: low
    reminders: 1
    reminder-interval: 1d
    grace: 1d
    action: { type: stop-instance }
  - name: iam-access-key-rotation
    description: Keys are rotated within 90 days.
    resource: iam-access-key
    check: { type: access-key-max-age, max-age-days: 90 }
    severity: high
    reminders: 0
    grace: 1d
    action: { type: deactivate-access-key }
    approval: true
  - name: sg-open-ssh
    description: No SSH from the internet.
    resource: security-group
    check: { type: open-ingress, port: 22 }
    severity: critical
    reminders: 0
    grace: 1h
    action: { type: revoke-open-ssh, params: { port: 22 } }
  - name: access-grant-expired
    description: Temporary access ends on time.
    resource: access-grant
    check: { type: grant-expired }
    severity: high
    reminders: 0
    grace: 30m
    action: { type: revoke-expired-grant }
"""


def iso(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class World:
    """The resources one test creates, each with a unique name, and the views of them the test asserts on."""

    def __init__(self, stack):
        self.stack = stack
        self.st = stack.stacks["compliance"]
        self.tag = uuid.uuid4().hex[:8]
        self.s3, self.ec2, self.iam = stack.client("s3"), stack.client("ec2"), stack.client("iam")
        self.db = stack.session.resource("dynamodb")

    def upload_policies(self, exceptions_yaml):
        bucket = self.st.physical["ConfigBucket"]
        self.s3.put_object(Bucket=bucket, Key="policies/policies.yaml", Body=POLICIES.encode())
        self.s3.put_object(Bucket=bucket, Key="policies/exceptions.yaml", Body=exceptions_yaml.encode())

    def bucket(self, compliant):
        name = f"{'good' if compliant else 'open'}-{self.tag}"
        self.s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        self.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "owner", "Value": f"data-{self.tag}@example.com"}]})
        if compliant:
            self.s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
            self.s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        return name

    def instance(self, owner):
        ami = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "owner", "Value": owner}]}]
        return self.ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=tags)["Instances"][0]["InstanceId"]

    def security_group(self, cidr, name=""):
        group = f"sg-{cidr.replace('/', '_')}-{self.tag}{name}"
        gid = self.ec2.create_security_group(GroupName=group, Description="t")["GroupId"]
        self.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": cidr}]}])
        return gid

    def access_key(self):
        user = f"dev-{self.tag}"
        self.iam.create_user(UserName=user, Tags=[{"Key": "owner", "Value": f"dev-{self.tag}@example.com"}])
        return user, self.iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]

    def grant(self, user, expires_at):
        """What `palisade grant` does: an inline policy on the user and a row in the grants table."""
        gid = f"g-{uuid.uuid4().hex[:10]}"
        role = f"arn:aws:iam::123456789012:role/support-{self.tag}"
        doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role}]}
        self.iam.put_user_policy(UserName=user, PolicyName=f"palisade-grant-{gid}", PolicyDocument=json.dumps(doc))
        self.db.Table(self.st.physical["GrantsTable"]).put_item(Item={
            "id": gid, "principal": user, "role": role, "status": "active", "expires_at": iso(expires_at),
            "owner": f"dev-{self.tag}@example.com", "granted_by": "test"})
        return gid

    # -- views --
    def violations(self):
        t = self.db.Table(self.st.physical["ViolationsTable"])
        out = {}
        for state in ("open", "enforcing", "enforced", "resolved", "undone"):
            for item in t.query(IndexName="by-state", KeyConditionExpression=Key("state").eq(state))["Items"]:
                out[item["id"]] = item
        return out

    def ledger(self, record_type="action"):
        t = self.db.Table(self.st.physical["LedgerTable"])
        return t.query(IndexName="by-type", KeyConditionExpression=Key("record_type").eq(record_type))["Items"]

    def state(self, instance):
        return self.ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]

    def world_open(self, gid):
        g = self.ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
        return any(r.get("CidrIp") == "0.0.0.0/0" for p in g["IpPermissions"] for r in p.get("IpRanges", []))

    def pab(self, bucket):
        try:
            return all(self.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
        except self.s3.exceptions.ClientError:
            return False

    def encrypted(self, bucket):
        try:
            self.s3.get_bucket_encryption(Bucket=bucket)
            return True
        except self.s3.exceptions.ClientError:
            return False

    def key_status(self, user, key):
        return next(k["Status"] for k in self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"] if k["AccessKeyId"] == key)

    def grant_policy(self, user, gid):
        return f"palisade-grant-{gid}" in self.iam.list_user_policies(UserName=user)["PolicyNames"]


def test_scan_sweep_enforce_except_and_undo(stack):
    w = World(stack)
    lam = stack.lambdas
    real_now = dt.datetime.now(UTC)
    t0 = real_now + dt.timedelta(days=200)

    # GIVEN violating and compliant resources, and an exception for one instance that ends three days after t0
    open_bucket, good_bucket = w.bucket(False), w.bucket(True)
    stale, excepted = w.instance(f"ops-{w.tag}@example.com"), w.instance(f"ops-{w.tag}@example.com")
    open_sg, private_sg = w.security_group("0.0.0.0/0"), w.security_group("10.0.0.0/8")
    user, key = w.access_key()
    expired_grant = w.grant(user, real_now - dt.timedelta(hours=1))
    live_grant = w.grant(user, real_now + dt.timedelta(days=400))
    w.upload_policies(f"""
exceptions:
  - policy: ec2-stale-instance
    resource: {excepted}
    reason: Load test.
    granted-by: alice@example.com
    expires: {iso(t0 + dt.timedelta(days=3))}
""")
    reminders = stack.subscribe_queue(w.st.physical["RemindersTopic"])

    # WHEN the scan runs
    report = lam.fire("compliance-scan", iso(t0))
    assert report["opened"] >= 7, report

    # THEN exactly the violating resources of this test are recorded, with owners from their tags
    mine = {k: v for k, v in w.violations().items() if any(r in k for r in
            (open_bucket, good_bucket, stale, excepted, open_sg, private_sg, key, expired_grant, live_grant))}
    assert set(mine) == {
        f"s3-public-access-block#{open_bucket}", f"s3-default-encryption#{open_bucket}",
        f"ec2-stale-instance#{stale}", f"ec2-stale-instance#{excepted}",
        f"iam-access-key-rotation#{key}", f"sg-open-ssh#{open_sg}", f"access-grant-expired#{expired_grant}",
    }
    assert all(v["state"] == "open" for v in mine.values())
    assert mine[f"ec2-stale-instance#{stale}"]["owner"] == f"ops-{w.tag}@example.com"
    # buckets and users are listed without tags; the scan reads them for the violating ones only
    assert mine[f"s3-public-access-block#{open_bucket}"]["owner"] == f"data-{w.tag}@example.com"
    assert mine[f"iam-access-key-rotation#{key}"]["owner"] == f"dev-{w.tag}@example.com"

    # WHEN the first sweep runs at t0: reminders go out, nothing is enforced yet
    r = lam.fire("compliance-sweep", iso(t0))
    assert r["enforced"] == 0, r
    digests = [json.loads(json.loads(m["Body"])["Message"]) for m in drain(w.stack.client("sqs"), reminders)]
    owners = {d["payload"]["owner"]: d["payload"] for d in digests}
    assert f"ops-{w.tag}@example.com" in owners and f"data-{w.tag}@example.com" in owners
    ops = owners[f"ops-{w.tag}@example.com"]
    assert {i["violation_id"] for i in ops["items"]} == {f"ec2-stale-instance#{stale}"}, "excepted: no reminder"
    data = owners[f"data-{w.tag}@example.com"]
    assert {i["violation_id"] for i in data["items"]} == {f"s3-public-access-block#{open_bucket}"}
    assert data["items"][0]["reminder"] == 1 and data["items"][0]["of"] == 1
    assert w.state(stale) == "running" and w.world_open(open_sg) and not w.pab(open_bucket)

    # WHEN two hours pass: SSH (grace 1h) and the expired grant (30m) are enforced
    lam.fire("compliance-sweep", iso(t0 + dt.timedelta(hours=2)))
    wait_for(lambda: not w.world_open(open_sg), what="the open SSH rule to be revoked")
    wait_for(lambda: not w.grant_policy(user, expired_grant), what="the expired grant to be revoked")
    assert w.grant_policy(user, live_grant), "a live grant is untouched"
    assert w.state(stale) == "running", "still inside its grace period"

    # WHEN a day and a bit pass: the rest is due; the access key waits for approval; the excepted instance waits
    lam.fire("compliance-sweep", iso(t0 + dt.timedelta(days=1, hours=2)))
    wait_for(lambda: w.state(stale) in ("stopping", "stopped"), what="the stale instance to stop")
    wait_for(lambda: w.pab(open_bucket), what="the public bucket to be blocked")
    wait_for(lambda: w.encrypted(open_bucket), what="default encryption")
    assert w.state(excepted) == "running", "an excepted resource is untouched"
    assert w.key_status(user, key) == "Active", "approval-gated"
    assert w.violations()[f"iam-access-key-rotation#{key}"]["next_step"] == "await-approval"

    # WHEN someone approves the key's deactivation, the next sweep enforces it, recording the approver
    w.db.Table(w.st.physical["ViolationsTable"]).update_item(
        Key={"id": f"iam-access-key-rotation#{key}"}, UpdateExpression="SET approved_by = :a",
        ExpressionAttributeValues={":a": "carol@example.com"})
    lam.fire("compliance-sweep", iso(t0 + dt.timedelta(days=1, hours=3)))
    wait_for(lambda: w.key_status(user, key) == "Inactive", what="the old key to be deactivated")

    # WHEN the exception expires, the excepted instance climbs the ladder like any other: a reminder, then grace
    r = lam.fire("compliance-sweep", iso(t0 + dt.timedelta(days=4)))
    assert r["reminded"] == 1 and r["enforced"] == 0, r
    assert w.state(excepted) == "running"
    lam.fire("compliance-sweep", iso(t0 + dt.timedelta(days=5, hours=1)))
    wait_for(lambda: w.state(excepted) in ("stopping", "stopped"), what="the formerly excepted instance to stop")

    # THEN every enforcement is in the ledger once, with its before-state, and the violations are enforced
    resources = {stale, excepted, open_bucket, open_sg, key, expired_grant}
    def applied():
        got = [e for e in w.ledger() if e["resource"] in resources and e["outcome"] == "applied"]
        return got if len(got) == 7 else None
    entries = wait_for(applied, what="seven applied ledger entries")
    key_entry = next(e for e in entries if e["resource"] == key)
    assert key_entry["actor"] == "carol@example.com"
    wait_for(lambda: all(w.violations()[v]["state"] == "enforced" for v in mine), what="violations marked enforced")

    # WHEN an enforcement message is delivered again, nothing changes
    fn = lam.function("enforce-stop-instance")
    before = fn.records
    stale_v = w.violations()[f"ec2-stale-instance#{stale}"]
    cmd = {"command": "enforce", "action": "stop-instance", "violation_id": stale_v["id"], "policy": "ec2-stale-instance",
           "resource": json.loads(stale_v["resource"]), "params": {}, "mode": "enforce",
           "occurrence": stale_v["first_seen"]}
    publish(stack.client("sns"), w.st.physical["EnforceStopInstanceTopic"], envelope("action.command", "123456789012", cmd))
    wait_for(lambda: fn.records > before, what="the duplicate to be handled")
    assert len([e for e in w.ledger() if e["resource"] == stale]) == 1

    # WHEN each enforcement is undone from its ledger entry, the resources are as they were
    topics = {"stop-instance": "EnforceStopInstanceTopic", "block-public-bucket": "EnforceBlockPublicBucketTopic",
              "enable-bucket-encryption": "EnforceEnableBucketEncryptionTopic",
              "deactivate-access-key": "EnforceDeactivateAccessKeyTopic", "revoke-open-ssh": "EnforceRevokeOpenSshTopic",
              "revoke-expired-grant": "EnforceRevokeExpiredGrantTopic"}
    for e in entries:
        undo = {"command": "undo", "action": e["action"], "ledger_id": e["id"], "requested_by": "dave@example.com"}
        publish(stack.client("sns"), w.st.physical[topics[e["action"]]], envelope("action.command", "123456789012", undo))
    wait_for(lambda: w.state(stale) in ("pending", "running") and w.state(excepted) in ("pending", "running"), what="instances restarted")
    wait_for(lambda: w.world_open(open_sg), what="the SSH rule restored")
    wait_for(lambda: not w.pab(open_bucket) and not w.encrypted(open_bucket), what="bucket settings restored")
    wait_for(lambda: w.key_status(user, key) == "Active", what="the key reactivated")
    wait_for(lambda: w.grant_policy(user, expired_grant), what="the grant restored")
    undos = wait_for(lambda: [u for u in w.ledger("undo") if u["resource"] in resources] if len(
        [u for u in w.ledger("undo") if u["resource"] in resources]) == 7 else None, what="seven undo entries")
    assert all(u["actor"] == "dave@example.com" for u in undos)


def test_a_violation_left_enforcing_is_published_again_after_six_hours(stack):
    w = World(stack)
    lam = stack.lambdas
    t0 = dt.datetime.now(UTC) + dt.timedelta(days=300)
    w.upload_policies("exceptions: []\n")
    lost, recent = w.security_group("0.0.0.0/0", "-lost"), w.security_group("0.0.0.0/0", "-recent")
    lam.fire("compliance-scan", iso(t0))
    table = w.db.Table(w.st.physical["ViolationsTable"])

    # GIVEN two violations marked enforcing whose commands never arrived: one 7 h ago (a sweep that died between
    # marking and publishing), one 1 h ago (its command may still be on the way)
    for gid, hours in ((lost, 7), (recent, 1)):
        table.update_item(Key={"id": f"sg-open-ssh#{gid}"}, UpdateExpression="SET #s = :s, next_step_at = :t",
                          ExpressionAttributeNames={"#s": "state"},
                          ExpressionAttributeValues={":s": "enforcing", ":t": iso(t0 - dt.timedelta(hours=hours))})

    # WHEN the sweep runs at t0
    r = lam.fire("compliance-sweep", iso(t0))

    # THEN only the one enforcing for longer than six hours is published again, and then enforced
    assert r["republished"] >= 1, r
    v = w.violations()
    assert v[f"sg-open-ssh#{lost}"]["next_step_at"].startswith(iso(t0)[:19]), v[f"sg-open-ssh#{lost}"]
    assert v[f"sg-open-ssh#{recent}"]["next_step_at"].startswith(iso(t0 - dt.timedelta(hours=1))[:19])
    wait_for(lambda: not w.world_open(lost), what="the lost command's SSH rule to be revoked")
    wait_for(lambda: w.violations()[f"sg-open-ssh#{lost}"]["state"] == "enforced", what="the violation enforced")
    assert w.world_open(recent) and w.violations()[f"sg-open-ssh#{recent}"]["state"] == "enforcing"

    # WHEN an enforced violation is found `enforcing` again (its mark lost) and published once more
    table.update_item(Key={"id": f"sg-open-ssh#{lost}"}, UpdateExpression="SET #s = :s, next_step_at = :t",
                      ExpressionAttributeNames={"#s": "state"},
                      ExpressionAttributeValues={":s": "enforcing", ":t": iso(t0)})
    entries = len([e for e in w.ledger() if e["resource"] == lost])
    lam.fire("compliance-sweep", iso(t0 + dt.timedelta(days=1)))
    # THEN the enforcement changes nothing on the resource, and closes the violation's books from its entry
    wait_for(lambda: w.violations()[f"sg-open-ssh#{lost}"]["state"] == "enforced", what="the violation enforced again")
    assert len([e for e in w.ledger() if e["resource"] == lost]) == entries == 1
