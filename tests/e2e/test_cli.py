"""The operator CLI (`palisade`, crate cli/) on the local stack: the real binary, run as an operator would, with its
output and the state it leaves in moto asserted on."""
import datetime as dt
import json
import os
import subprocess
import uuid

from palisade_local.local import bin_dir
from palisade_local.messages import enforce_command, envelope, publish, wait_for

UTC = dt.timezone.utc
STACK = "palisade-compliance"
POLICIES = os.path.join(os.path.dirname(__file__), "..", "..", "infra", "policies", "policies.yaml")


def palisade(stack, *args, check=True):
    env = {**os.environ, **stack.moto.env()}
    out = subprocess.run([os.path.join(bin_dir(), "palisade"), *args], env=env, capture_output=True, text=True,
                         timeout=60)
    if check:
        assert out.returncode == 0, f"palisade {' '.join(args)} exited {out.returncode}: {out.stderr}"
    return out


def iso(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def table(stack, logical):
    return stack.session.resource("dynamodb").Table(stack.stacks["compliance"].physical[logical])


def put_violation(stack, state):
    tag = uuid.uuid4().hex[:8]
    now = dt.datetime.now(UTC)
    item = {
        "id": f"iam-access-key-rotation#AKIA{tag}", "policy": "iam-access-key-rotation",
        "resource": json.dumps({"kind": "iam-access-key", "id": f"AKIA{tag}"}), "snapshot": "{}",
        "owner": f"dev-{tag}@example.com", "severity": "high", "reason": "old-key", "summary": "An old key.",
        "state": state, "first_seen": iso(now), "last_seen": iso(now), "reminders_sent": 0,
    }
    table(stack, "ViolationsTable").put_item(Item=item)
    return item["id"]


def test_validate_reports_every_problem_with_its_line(stack, tmp_path):
    # GIVEN the shipped policies with a bad grace, and the shipped file itself
    src = open(POLICIES).read()
    line = next(i for i, l in enumerate(src.splitlines(), 1) if l.strip() == "grace: 1d")
    bad = tmp_path / "policies.yaml"
    bad.write_text(src.replace("grace: 1d", "grace: 3x", 1))
    # WHEN each is validated
    broken, good = palisade(stack, "validate", "policies", str(bad), check=False), palisade(stack, "validate", "policies", POLICIES)
    # THEN the broken one exits 1 naming file, line and field; the good one prints a summary
    assert broken.returncode == 1
    assert f"{bad}:{line}: policies[0].grace" in broken.stderr, broken.stderr
    assert "7 policies, valid" in good.stdout


def test_validate_tenant_checks_samconfig_against_the_pipeline_template(stack, tmp_path):
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    template = os.path.join(root, "infra", "pipeline.yaml")
    # GIVEN the shipped samconfig.toml, and a copy whose example tenant has a bad size limit and no target
    src = open(os.path.join(root, "samconfig.toml")).read()
    line = next(l for l in src.splitlines() if l.startswith("parameter_overrides") and "Tenant=acme" in l)
    bad = tmp_path / "samconfig.toml"
    bad.write_text(src.replace(line, 'parameter_overrides = "Environment=test Tenant=acme MaxFileBytes=-5"'))
    # WHEN each is validated
    good = palisade(stack, "validate", "tenant", "--samconfig", os.path.join(root, "samconfig.toml"),
                    "--template", template)
    broken = palisade(stack, "validate", "tenant", "--samconfig", str(bad), "--template", template,
                      "--config-env", "test-tenant-acme", check=False)
    # THEN the shipped tenant is valid and every problem of the broken one is named with its section and field
    assert "[test-tenant-acme]: tenant acme, stack palisade-pipeline-acme-test" in good.stdout, good.stdout
    assert broken.returncode == 1
    assert "[test-tenant-acme] MaxFileBytes: -5 is not at least 1" in broken.stderr, broken.stderr
    assert "[test-tenant-acme] Target: is required" in broken.stderr, broken.stderr


def test_violations_and_approve(stack):
    # GIVEN an open violation of an approval-gated policy and an enforced one
    open_id, enforced_id = put_violation(stack, "open"), put_violation(stack, "enforced")
    # WHEN they are listed
    listed = json.loads(palisade(stack, "violations", "--state", "open", "--json").stdout)
    # THEN only the open one is in the open listing, and the table shows both
    assert open_id in {v["id"] for v in listed} and enforced_id not in {v["id"] for v in listed}
    text = palisade(stack, "violations").stdout
    assert text.startswith("ID") and open_id in text and enforced_id in text
    # WHEN the open one is approved THEN the approver is on the item
    out = palisade(stack, "approve", open_id, "--by", "carol@example.com")
    assert f"approved {open_id}" in out.stdout
    item = table(stack, "ViolationsTable").get_item(Key={"id": open_id})["Item"]
    assert item["approved_by"] == "carol@example.com" and item["state"] == "open"
    # AND approving one that is not open, or does not exist, fails and changes nothing
    refused = palisade(stack, "approve", enforced_id, "--by", "carol@example.com", check=False)
    assert refused.returncode == 1 and "is enforced, not open" in refused.stderr
    assert "approved_by" not in table(stack, "ViolationsTable").get_item(Key={"id": enforced_id})["Item"]
    missing = palisade(stack, "approve", "nope#nope", "--by", "carol@example.com", check=False)
    assert missing.returncode == 1 and "no violation" in missing.stderr
    # AND a bad email or an unknown stack is refused clearly
    assert palisade(stack, "approve", open_id, "--by", "carol", check=False).returncode == 2
    other = palisade(stack, "violations", "--stack", "no-such-stack", check=False)
    assert other.returncode == 1 and "does not exist" in other.stderr


def test_ledger_and_incidents(stack):
    # GIVEN an incident entry in the ledger
    iid = f"incident-{uuid.uuid4().hex[:24]}"
    table(stack, "LedgerTable").put_item(Item={
        "id": iid, "record_type": "incident", "at": iso(dt.datetime.now(UTC)), "tenant": "acme",
        "function": "pipeline-ingest", "action": "quarantine", "resource": "s3://inbox/x", "outcome": "open",
        "actor": "pipeline-ingest", "correlation_id": str(uuid.uuid4()), "details": "{}"})
    # WHEN incidents and the ledger by type are listed THEN it is there, as JSON and as a table
    assert iid in {e["id"] for e in json.loads(palisade(stack, "incidents", "--json").stdout)}
    assert iid in palisade(stack, "ledger", "--type", "incident", "--limit", "500").stdout
    assert iid not in palisade(stack, "ledger", "--type", "action", "--limit", "500").stdout
    assert palisade(stack, "ledger", "--type", "audit", check=False).returncode == 2


def test_undo_then_redrive(stack):
    # GIVEN an instance stopped by enforce-stop-instance
    ec2 = stack.client("ec2")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    topic = stack.stacks["compliance"].physical["EnforceStopInstanceTopic"]
    cmd = enforce_command("stop-instance", f"cli-test#{inst}", "ec2-instance", inst)
    publish(stack.client("sns"), topic, envelope("action.command", "acme", cmd))
    entry = wait_for(lambda: next((e for e in json.loads(palisade(stack, "ledger", "--limit", "500", "--json").stdout)
                                   if e["resource"] == inst and e["outcome"] == "applied"), None),
                     what="the stop to be applied")
    state = lambda: ec2.describe_instances(InstanceIds=[inst])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state() in ("stopping", "stopped")
    # WHEN it is undone through the CLI
    out = palisade(stack, "undo", entry["id"], "--by", "dave@example.com")
    # THEN the correlation id of the action's chain is printed, the instance runs again, and the undo is recorded
    assert f"correlation id {entry['correlation_id']}" in out.stdout
    wait_for(lambda: state() in ("pending", "running"), what="the instance restarted")
    undo = wait_for(lambda: next((u for u in json.loads(palisade(stack, "ledger", "--type", "undo", "--limit", "500", "--json").stdout)
                                  if u["details"].get("ledger_id") == entry["id"]), None), what="the undo entry")
    assert undo["actor"] == "dave@example.com"
    # AND a second undo is refused before anything is published
    again = wait_for(lambda: (lambda o: o if o.returncode == 1 else None)(palisade(stack, "undo", entry["id"], "--by", "dave@example.com", check=False)),
                     what="the entry marked undone")
    assert "already undone" in again.stderr

    # GIVEN three (harmless, already handled) undo commands parked in the function's DLQ
    sqs = stack.client("sqs")
    dlq = sqs.get_queue_url(QueueName=f"{STACK}-enforce-stop-instance-dlq")["QueueUrl"]
    fn = stack.lambdas.function("enforce-stop-instance")
    before = fn.records
    body = {"command": "undo", "action": "stop-instance", "ledger_id": entry["id"], "requested_by": "dave@example.com"}
    for _ in range(3):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(envelope("action.command", "acme", body)))
    # WHEN the function's DLQ is redriven
    out = palisade(stack, "redrive", "enforce-stop-instance")
    # THEN all three are moved back, the function handles them, and the DLQ stays empty
    assert "moved 3 message(s)" in out.stdout, out.stdout + out.stderr
    wait_for(lambda: fn.records >= before + 3 or None, what="the redriven messages to be handled")
    attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert palisade(stack, "redrive", "enforce-nothing", check=False).returncode == 1


def test_grant_and_revoke(stack):
    # GIVEN an IAM user
    iam = stack.client("iam")
    user = f"contractor-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    role = "arn:aws:iam::123456789012:role/support"
    # WHEN access is granted for four hours
    out = palisade(stack, "grant", user, "--role", role, "--until", "4h", "--by", "alice@example.com")
    gid = out.stdout.strip()
    # THEN the user has the inline policy on that role and the grants table has an active row ending in ~4h
    doc = iam.get_user_policy(UserName=user, PolicyName=f"palisade-grant-{gid}")["PolicyDocument"]
    if isinstance(doc, str):
        doc = json.loads(doc)
    assert doc["Statement"][0] == {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role}
    row = table(stack, "GrantsTable").get_item(Key={"id": gid})["Item"]
    assert (row["status"], row["principal"], row["role"], row["granted_by"], row["owner"]) == (
        "active", user, role, "alice@example.com", "alice@example.com")
    ends = dt.datetime.fromisoformat(row["expires_at"].replace("Z", "+00:00"))
    assert abs((ends - dt.datetime.now(UTC)) - dt.timedelta(hours=4)) < dt.timedelta(minutes=5)
    # WHEN it is revoked THEN the policy is gone and the row says revoked; a second revoke is refused
    palisade(stack, "revoke", gid)
    assert f"palisade-grant-{gid}" not in iam.list_user_policies(UserName=user)["PolicyNames"]
    assert table(stack, "GrantsTable").get_item(Key={"id": gid})["Item"]["status"] == "revoked"
    again = palisade(stack, "revoke", gid, check=False)
    assert again.returncode == 1 and "not active" in again.stderr
    # AND grants for unknown users or in the past are refused without a row
    nobody = palisade(stack, "grant", "nobody-here", "--role", role, "--until", "1h", "--by", "a@example.com", check=False)
    assert nobody.returncode == 1 and "no IAM user" in nobody.stderr
    past = palisade(stack, "grant", user, "--role", role, "--until", "2020-01-01T00:00:00Z", "--by", "a@example.com", check=False)
    assert past.returncode == 1 and "in the past" in past.stderr


def test_exceptions_list_add_expire(stack):
    # GIVEN the shipped policy files in the config bucket
    s3, bucket = stack.client("s3"), stack.stacks["compliance"].physical["ConfigBucket"]
    policies_dir = os.path.dirname(POLICIES)
    for name in ("policies.yaml", "exceptions.yaml"):
        s3.put_object(Bucket=bucket, Key=f"policies/{name}", Body=open(os.path.join(policies_dir, name), "rb").read())
    stored = lambda: s3.get_object(Bucket=bucket, Key="policies/exceptions.yaml")["Body"].read().decode()
    listed = json.loads(palisade(stack, "exceptions", "list", "--json").stdout)
    assert [e["policy"] for e in listed] == ["ec2-stale-instance"]
    # WHEN an exception is added by tag
    palisade(stack, "exceptions", "add", "--policy", "s3-default-encryption", "--tag", "team=data", "--reason",
             "Legacy bucket: migration agreed.", "--by", "bob@example.com", "--expires", "2w")
    # THEN the stored file keeps its comments and lists both, the new one active
    text = stored()
    assert text.startswith("# Agreed, time-limited departures")
    table_out = palisade(stack, "exceptions", "list").stdout
    assert "s3-default-encryption" in table_out and "team=data" in table_out
    listed = json.loads(palisade(stack, "exceptions", "list", "--json").stdout)
    assert len(listed) == 2 and listed[1]["scope"] == {"tags": {"team": "data"}}
    # WHEN one for an unknown policy is added THEN it is refused with the line, and the file is unchanged
    bad = palisade(stack, "exceptions", "add", "--policy", "nope", "--resource", "i-1", "--reason", "x",
                   "--by", "bob@example.com", "--expires", "1d", check=False)
    assert bad.returncode == 1 and "exceptions.yaml:" in bad.stderr and "nope" in bad.stderr
    assert stored() == text
    # WHEN the second is expired THEN it has ended and the first has not
    palisade(stack, "exceptions", "expire", "2")
    rows = palisade(stack, "exceptions", "list").stdout.splitlines()
    assert "active" in rows[1] and "expired" in rows[2], rows
    assert palisade(stack, "exceptions", "expire", "9", check=False).returncode == 1


def test_dashboard_url_refuses_bad_input_clearly(stack):
    # GIVEN no dashboard page in the bucket yet (the dashboard test renders it later)
    bucket = stack.stacks["compliance"].physical["DashboardBucket"]
    stack.client("s3").delete_object(Bucket=bucket, Key="dashboard/index.html")
    # WHEN an operator asks for its link, too long a link, or the link of a stack without a dashboard
    missing = palisade(stack, "dashboard-url", "--stack", STACK, check=False)
    too_long = palisade(stack, "dashboard-url", "--stack", STACK, "--expires", "13h", check=False)
    wrong = palisade(stack, "dashboard-url", "--stack", stack.stacks["pipeline"].name, check=False)
    # THEN each fails with a reason, and no link is printed
    assert missing.returncode == 1 and "has not been generated yet" in missing.stderr, missing.stderr
    assert too_long.returncode == 2 and "between 1m and 12h" in too_long.stderr, too_long.stderr
    assert wrong.returncode == 1 and "DashboardBucket" in wrong.stderr, wrong.stderr
    assert missing.stdout == too_long.stdout == wrong.stdout == ""
