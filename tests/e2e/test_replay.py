"""`palisade replay` on the local stack: from an incident's alert to the failure reproduced by the function's real
binary, without a second DLQ copy, quarantine or incident; and, once the cause is fixed, the same input through the
pipeline, with the DLQ message gone and the incident marked replayed."""
import hashlib
import json
import os
import subprocess
import uuid

from boto3.dynamodb.conditions import Key

from palisade_local.local import bin_dir
from palisade_local.messages import drain, wait_for

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
POLICIES = os.path.join(os.path.dirname(__file__), "..", "..", "infra", "policies", "policies.yaml")


def palisade(stack, *args):
    env = {**os.environ, **stack.moto.env()}
    return subprocess.run([os.path.join(bin_dir(), "palisade"), *args], env=env, capture_output=True, text=True,
                          timeout=180)


def _pipe(stack):
    return stack.stacks["pipeline"]


def _ledger(stack, record_type):
    t = stack.session.resource("dynamodb").Table(_pipe(stack).physical["LedgerTable"])
    return t.query(IndexName="by-type", KeyConditionExpression=Key("record_type").eq(record_type))["Items"]


def _upload(stack, name, body):
    key = f"incoming/{uuid.uuid4().hex[:6]}/{name}"
    stack.client("s3").put_object(Bucket=_pipe(stack).physical["InboxBucket"], Key=key, Body=body)
    return key


def _unique(path):
    """A fixture with a unique trailing PDF comment: the same document to a reader, a new file id."""
    with open(os.path.join(FIXTURES, path), "rb") as f:
        body = f.read() + f"\n% {uuid.uuid4().hex}\n".encode()
    return body, hashlib.sha256(body).hexdigest()[:32]


def _peek(sqs, url):
    """Every message in a queue, left there: received with a short visibility, then made visible again."""
    seen = {}
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0,
                                  MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            break
        seen.update({m["MessageId"]: m for m in got})
    handles = [m["ReceiptHandle"] for m in seen.values()]
    for i in range(0, len(handles), 10):
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0} for n, h in enumerate(handles[i:i + 10])])
    return list(seen.values())


def _copies(sqs, dlq, source_id):
    return [m for m in _peek(sqs, dlq)
            if m.get("MessageAttributes", {}).get("palisade-source-id", {}).get("StringValue") == source_id]


def _alert(stack, queue, pred, what):
    seen = []

    def look():
        got = drain(stack.client("sqs"), queue, wait=0)
        seen.extend(json.loads(json.loads(m["Body"])["Message"])["payload"] for m in got)
        return [a for a in seen if pred(a)]
    return wait_for(look, timeout=90, what=what)[0]


def test_replay_reproduces_a_refused_delivery_then_sends_it_through_once_the_target_accepts(stack, receiver):
    pipe, sqs = _pipe(stack), stack.client("sqs")
    name = pipe.name
    dlq = pipe.physical["PipelineDeliverDLQ"]
    alerts = stack.subscribe_queue(pipe.physical["AlertsTopic"])
    # GIVEN a quote the tenant's target refuses (422), so deliver keeps it in its DLQ with an incident and an alert
    body, file_id = _unique("quotes/C-libreoffice-1.pdf")
    receiver.refuse.add(file_id)
    _upload(stack, "refused-then-fixed.pdf", body)
    alert = _alert(stack, alerts, lambda a: a["error_code"] == "target_refused" and file_id in json.dumps(a),
                   "the refusal's alert")
    incident_id, source_id = alert["incident_id"], alert["source_id"]
    assert alert["replay"].startswith(f"palisade replay {incident_id}")
    assert len(_copies(sqs, dlq, source_id)) == 1
    assert receiver.attempts[file_id] == 1

    # WHEN the support engineer runs the command the alert gives, as it is (the CLI finds the incident's stack)
    out = palisade(stack, *alert["replay"].split()[1:])
    # THEN the real deliver binary ran against the target again and the same failure is reported, exit 1
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith("reproduced: permanent target_refused: "), out.stdout + out.stderr
    assert f"incident {incident_id} is in stack {name}" in out.stderr
    assert receiver.attempts[file_id] == 2
    # AND its log lines (JSON, redacted by the function) are shown
    logs = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert any(l.get("level") in ("WARN", "ERROR", "INFO") for l in logs), out.stderr
    # AND the replay kept, raised and delivered nothing: one DLQ copy, one open incident, nothing received
    assert len(_copies(sqs, dlq, source_id)) == 1
    mine = [e for e in _ledger(stack, "incident") if e["resource"] == source_id]
    assert [(e["id"], e["outcome"]) for e in mine] == [(incident_id, "open")]
    assert not [k for k, _, _ in receiver.records() if k == file_id]

    # WHEN the cause is fixed (the target accepts again) and the incident replayed
    receiver.refuse.discard(file_id)
    out = palisade(stack, "replay", incident_id, "--stack", name, "--json")
    # THEN it goes through: the record arrives once, signed; the DLQ message is gone; the incident is replayed
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert (result["outcome"], result["incident_id"], result["removed_from"]) == (
        "replayed", incident_id, dlq.rsplit("/", 1)[-1])
    assert result["incident_error_code"] == "target_refused"
    got = [(k, ok) for k, _, ok in receiver.records() if k == file_id]
    assert got == [(file_id, True)]
    assert _copies(sqs, dlq, source_id) == []
    entry = next(e for e in _ledger(stack, "incident") if e["id"] == incident_id)
    assert entry["outcome"] == "replayed" and "replayed_at" in json.loads(entry["details"])
    assert [e for e in _ledger(stack, "file") if e["outcome"] == "delivered" and file_id in e["details"]]

    # AND a second replay is refused before anything runs
    again = palisade(stack, "replay", incident_id, "--stack", name)
    assert again.returncode == 1 and "already replayed" in again.stderr
    assert receiver.attempts[file_id] == 3


def test_replay_reproduces_an_extract_quarantine_without_moving_or_raising_anything(stack):
    pipe, s3 = _pipe(stack), stack.client("s3")
    name = pipe.name
    inbox = pipe.physical["InboxBucket"]
    # GIVEN a PDF that passes ingest but not extraction: quarantined by extract, with an incident
    body, file_id = _unique("broken/header-only.pdf")
    key = _upload(stack, "header-only.pdf", body)
    source = f"s3://{inbox}/{key}"
    incident = wait_for(lambda: next((e for e in _ledger(stack, "incident") if e["resource"] == source), None),
                        timeout=90, what="extract's incident")
    details = json.loads(incident["details"])
    assert incident["function"].endswith("pipeline-extract")
    assert details["kept_in"].startswith(f"s3://{inbox}/quarantine/")
    quarantine_before = s3.list_objects_v2(Bucket=inbox, Prefix="quarantine/").get("KeyCount", 0)
    files_before = len(_ledger(stack, "file"))
    incidents_before = len(_ledger(stack, "incident"))

    # WHEN it is replayed
    out = palisade(stack, "replay", incident["id"], "--stack", name)
    # THEN the extractor's decision is reproduced with the incident's code, exit 1
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith(f"reproduced: permanent {details['error_code']}: "), out.stdout + out.stderr
    # AND nothing was moved, recorded or raised: the file is where it was kept, and nothing new is in the ledger
    kept_key = details["kept_in"].split("/", 3)[-1]
    assert s3.head_object(Bucket=inbox, Key=kept_key)["ContentLength"] == len(body)
    assert s3.list_objects_v2(Bucket=inbox, Prefix="quarantine/").get("KeyCount", 0) == quarantine_before
    assert len(_ledger(stack, "file")) == files_before
    assert len(_ledger(stack, "incident")) == incidents_before
    entry = next(e for e in _ledger(stack, "incident") if e["id"] == incident["id"])
    assert entry["outcome"] == "open"


def test_replay_reruns_a_failed_scheduled_scan_at_its_time(stack):
    comp = stack.stacks["compliance"]
    s3, bucket = stack.client("s3"), comp.physical["ConfigBucket"]
    files = {f"policies/{n}": os.path.join(os.path.dirname(POLICIES), n) for n in ("policies.yaml", "exceptions.yaml")}
    originals = {}
    for key in files:
        try:
            originals[key] = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            originals[key] = None
    try:
        # GIVEN a scheduled scan that failed on a broken policies file, with an incident naming its time
        s3.put_object(Bucket=bucket, Key="policies/policies.yaml", Body=b"policies:\n  - name: [not, a, name]\n")
        when = "2026-11-20T06:00:00Z"
        try:
            stack.lambdas.fire("compliance-scan", when)
            raise AssertionError("the scan should have failed")
        except Exception as e:  # InvokeError from the local Lambda service
            assert "invalid_policy" in str(e), e
        ledger = stack.session.resource("dynamodb").Table(comp.physical["LedgerTable"])
        query = dict(IndexName="by-type", KeyConditionExpression=Key("record_type").eq("incident"))
        incidents = ledger.query(**query)["Items"]
        incident = next(e for e in incidents if e["function"].endswith("compliance-scan") and e["outcome"] == "open"
                        and json.loads(e["details"])["kept_in"].startswith(f"scheduled event at {when}"))
        # WHEN it is replayed THEN the same failure is reproduced from the rebuilt event, and nothing new is raised
        out = palisade(stack, "replay", incident["id"], "--stack", comp.name)
        assert out.returncode == 1, out.stdout + out.stderr
        assert out.stdout.startswith("reproduced: permanent invalid_policy: "), out.stdout + out.stderr
        assert len(ledger.query(**query)["Items"]) == len(incidents)
        # WHEN the files are fixed and it is replayed again THEN the scan runs at its time and the incident is closed
        for key, path in files.items():
            with open(path, "rb") as f:
                s3.put_object(Bucket=bucket, Key=key, Body=f.read())
        out = palisade(stack, "replay", incident["id"], "--stack", comp.name)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "replayed: the input went through" in out.stdout and f"scheduled event of {when}" in out.stdout
        assert ledger.get_item(Key={"id": incident["id"]})["Item"]["outcome"] == "replayed"
    finally:
        for key, body in originals.items():
            if body is None:
                s3.delete_object(Bucket=bucket, Key=key)
            else:
                s3.put_object(Bucket=bucket, Key=key, Body=body)


def test_replay_refuses_bad_input_clearly(stack, tmp_path):
    name = _pipe(stack).name
    # an unknown incident, a stack that does not exist, an entry that is not an incident
    missing = palisade(stack, "replay", "incident-000000000000000000000000", "--stack", name)
    assert missing.returncode == 1 and "no incident" in missing.stderr and "palisade incidents" in missing.stderr
    anywhere = palisade(stack, "replay", "incident-000000000000000000000000")
    assert anywhere.returncode == 1 and "any stack" in anywhere.stderr and name in anywhere.stderr, anywhere.stderr
    nostack = palisade(stack, "replay", "incident-1", "--stack", "no-such-stack")
    assert nostack.returncode == 1 and "does not exist" in nostack.stderr
    files = _ledger(stack, "file")
    if files:
        wrong = palisade(stack, "replay", files[0]["id"], "--stack", name)
        assert wrong.returncode == 1 and "not an incident" in wrong.stderr
    # an incident whose input is no longer in the DLQ (redriven, say), and one whose binary is not built
    dlq = _pipe(stack).physical["PipelineDeliverDLQ"]
    iid = f"incident-{uuid.uuid4().hex[:24]}"
    stack.session.resource("dynamodb").Table(_pipe(stack).physical["LedgerTable"]).put_item(Item={
        "id": iid, "record_type": "incident", "at": "2026-11-23T10:00:00.000Z", "tenant": "acme",
        "function": f"{name}-pipeline-deliver", "action": "incident", "resource": str(uuid.uuid4()), "outcome": "open",
        "actor": f"{name}-pipeline-deliver", "correlation_id": str(uuid.uuid4()),
        "details": json.dumps({"error_class": "permanent", "error_code": "target_refused", "summary": "refused",
                               "kept_in": dlq})})
    gone = palisade(stack, "replay", iid, "--stack", name)
    assert gone.returncode == 1 and "is no longer in" in gone.stderr, gone.stderr
    nobin = palisade(stack, "replay", iid, "--stack", name, "--bin-dir", str(tmp_path))
    assert nobin.returncode == 1 and "cargo build -p pipeline-deliver" in nobin.stderr, nobin.stderr
    # and --help says the binary must be a host build
    help_text = palisade(stack, "replay", "--help").stdout
    assert "host build" in help_text and "--bin-dir" in help_text
