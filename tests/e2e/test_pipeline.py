"""The quote pipeline end to end on the local stack: uploads into the tenant's inbox bucket go through the real
ingest, extract and deliver binaries to a local receiver; broken inputs are quarantined with an incident and an
alert; retention deletes only what is old, and only this tenant's."""
import datetime as dt
import glob
import json
import os
import uuid

from boto3.dynamodb.conditions import Key

from palisade_local.messages import drain, wait_for

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def _pipe(stack):
    return stack.stacks["pipeline"]


def _ledger(stack, record_type="file"):
    t = stack.session.resource("dynamodb").Table(_pipe(stack).physical["LedgerTable"])
    return t.query(IndexName="by-type", KeyConditionExpression=Key("record_type").eq(record_type))["Items"]


def _upload(stack, name, body):
    key = f"incoming/{uuid.uuid4().hex[:6]}/{name}"
    stack.client("s3").put_object(Bucket=_pipe(stack).physical["InboxBucket"], Key=key, Body=body)
    return key


def test_every_fixture_quote_arrives_once_signed_and_field_for_field(stack, receiver):
    # GIVEN one quote per carrier layout and PDF producer
    pdfs = sorted(glob.glob(os.path.join(FIXTURES, "quotes", "*-0.pdf")))
    assert len(pdfs) >= 9, pdfs
    expected = {}
    for p in pdfs:
        with open(p, "rb") as f:
            body = f.read()
        with open(p[:-4] + ".json", encoding="utf-8") as f:
            expected[__import__("hashlib").sha256(body).hexdigest()[:32]] = (os.path.basename(p), json.load(f))
        # WHEN it is uploaded into the tenant's inbox
        _upload(stack, os.path.basename(p), body)

    # THEN each arrives at the receiver as a record, with a valid signature, exactly once
    def arrived():
        got = {k: r for k, r, ok in receiver.records() if k in expected}
        return got if len(got) == len(expected) else None
    got = wait_for(arrived, timeout=90, what=f"{len(expected)} records at the receiver")
    assert all(ok for k, _, ok in receiver.records() if k in expected)
    for file_id, (name, want) in expected.items():
        rec = got[file_id]
        assert rec["tenant"] == "acme"
        assert rec["quote"] == want, f"{name}: {json.dumps(rec['quote'], indent=1)} != {json.dumps(want, indent=1)}"
    delivered = [e for e in _ledger(stack) if e["outcome"] == "delivered" and json.loads(e["details"])["file_id"] in expected]
    assert len(delivered) == len(expected)

    # AND no customer value reached any function's log, nor the ledger
    logs = "".join(open(os.path.join(stack.lambdas.log_dir, f), encoding="utf-8", errors="replace").read()
                   for f in os.listdir(stack.lambdas.log_dir))
    ledger_text = json.dumps(_ledger(stack), default=str)
    for _, want in expected.values():
        amounts = [want["total_premium"]] + [c[k] for c in want["coverages"] for k in ("limit", "premium")]
        # amounts with at least four digits before the point cannot be mistaken for parts of timestamps or timings
        for value in [want["insured_name"]] + [a for a in amounts if len(a.split(".")[0]) >= 4]:
            assert value not in logs, f"{value!r} is in a function log"
            assert value not in ledger_text, f"{value!r} is in the ledger"

    # WHEN the same bytes are uploaded again under another name
    name, _ = next(iter(expected.values()))
    with open(os.path.join(FIXTURES, "quotes", name), "rb") as f:
        key = _upload(stack, "again-" + name, f.read())
    # THEN the duplicate is recognised and recorded, and nothing is delivered twice
    wait_for(lambda: [e for e in _ledger(stack) if e["outcome"] == "duplicate" and e["resource"].endswith(key)],
             what="the duplicate upload to be recorded")
    assert len([k for k, _, _ in receiver.records() if k in expected]) == len(expected)


def test_broken_inputs_are_quarantined_with_an_incident_and_an_alert(stack):
    pipe = _pipe(stack)
    s3 = stack.client("s3")
    alerts = stack.subscribe_queue(pipe.physical["AlertsTopic"])
    broken = {os.path.basename(p): open(p, "rb").read() for p in glob.glob(os.path.join(FIXTURES, "broken", "*"))}
    broken["oversized.pdf"] = b"%PDF-1.7\n" + os.urandom(2 * 1024 * 1024 + 10)
    keys = {name: _upload(stack, name, body) for name, body in broken.items()}

    # THEN every one ends under quarantine/ with its reason, and none is left in incoming/
    def quarantined():
        q = s3.list_objects_v2(Bucket=pipe.physical["InboxBucket"], Prefix="quarantine/").get("Contents", [])
        entries = {e["resource"].split("/", 3)[-1]: e for e in _ledger(stack) if e["outcome"] == "quarantined"}
        return entries if all(k in entries for k in keys.values()) and len(q) >= len(keys) else None
    entries = wait_for(quarantined, timeout=90, what="every broken input quarantined")
    reasons = {name: json.loads(entries[k]["details"])["reason"] for name, k in keys.items()}
    assert reasons["empty.pdf"] == "empty_file"
    assert reasons["oversized.pdf"] == "file_too_large"
    assert reasons["not-a-pdf.pdf"] == "type_not_allowed"
    assert reasons["zip-bomb.zip.pdf"] == "type_not_allowed"
    for name in ("truncated.pdf", "encrypted.pdf", "header-only.pdf", "deflate-bomb.pdf"):
        assert name in reasons and reasons[name] not in ("", None), reasons
    left = s3.list_objects_v2(Bucket=pipe.physical["InboxBucket"], Prefix="incoming/").get("Contents", [])
    assert not [o for o in left if o["Key"] in keys.values()], "nothing stays in incoming/"
    for k in keys.values():
        kept = json.loads(entries[k]["details"])["kept_in"]
        head = s3.head_object(Bucket=pipe.physical["InboxBucket"], Key=kept.split("/", 3)[-1])
        assert head["Metadata"]["palisade-reason"] == json.loads(entries[k]["details"])["reason"]

    # AND an incident and an alert for each, naming the file and how to replay it, never its content
    incidents = {e["resource"]: e for e in _ledger(stack, "incident")}
    inbox = pipe.physical["InboxBucket"]
    for k in keys.values():
        assert f"s3://{inbox}/{k}" in incidents, k
    seen = []

    def alerted():
        seen.extend(json.loads(json.loads(m["Body"])["Message"]) for m in drain(stack.client("sqs"), alerts, wait=0))
        ids = {a["payload"]["source_id"] for a in seen}
        return all(f"s3://{inbox}/{k}" in ids for k in keys.values()) or None
    wait_for(alerted, what="an alert per broken input")
    for a in seen:
        assert a["payload"]["tenant"] == "acme" and a["payload"]["replay"].startswith("palisade replay ")


def test_retention_deletes_only_old_objects_of_this_tenant(stack):
    pipe = _pipe(stack)
    s3 = stack.client("s3")
    other = f"other-tenant-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=other, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket=other, Key="incoming/x.pdf", Body=b"%PDF-1.7 other tenant")
    inbox, processed = pipe.physical["InboxBucket"], pipe.physical["ProcessedBucket"]
    marker = uuid.uuid4().hex[:6]
    s3.put_object(Bucket=inbox, Key=f"quarantine/old-{marker}.pdf", Body=b"x")
    s3.put_object(Bucket=processed, Key=f"quotes/keep-{marker}.json", Body=b"{}")

    # WHEN retention runs 45 days from now (inbox 30 days, quarantine 90, processed 365)
    when = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = stack.lambdas.fire("pipeline-retention", when)

    # THEN uploads are gone, quarantine and records stay, and the other tenant's bucket is untouched
    assert report["inbox"] >= 1, report
    assert not s3.list_objects_v2(Bucket=inbox, Prefix="incoming/").get("Contents")
    assert s3.head_object(Bucket=inbox, Key=f"quarantine/old-{marker}.pdf")
    assert s3.head_object(Bucket=processed, Key=f"quotes/keep-{marker}.json")
    assert s3.head_object(Bucket=other, Key="incoming/x.pdf")
    deleted = [e for e in _ledger(stack) if e["action"] == "retention-delete"]
    assert deleted and all(json.loads(e["details"])["policy_days"] == 30 for e in deleted)
    assert all(e["resource"].startswith(f"s3://{inbox}/incoming/") for e in deleted)

    # WHEN it runs 100 days from now, the quarantine goes too
    when = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stack.lambdas.fire("pipeline-retention", when)
    assert not s3.list_objects_v2(Bucket=inbox, Prefix=f"quarantine/old-{marker}").get("Contents")
    assert s3.head_object(Bucket=processed, Key=f"quotes/keep-{marker}.json")


def _unique_quote(name):
    """A fixture quote with a unique trailing comment: same content to the reader, a new file id."""
    with open(os.path.join(FIXTURES, "quotes", name), "rb") as f:
        body = f.read() + f"\n% {uuid.uuid4().hex}\n".encode()
    return body, __import__("hashlib").sha256(body).hexdigest()[:32]


def test_delivery_retries_5xx_and_keeps_a_refused_record_with_an_incident(stack, receiver):
    pipe = _pipe(stack)
    sqs = stack.client("sqs")
    # GIVEN a receiver that fails one quote's first two attempts and refuses another outright
    flaky, flaky_id = _unique_quote("B-chromium-1.pdf")
    refused, refused_id = _unique_quote("C-libreoffice-1.pdf")
    receiver.fail_first[flaky_id] = 2
    receiver.refuse.add(refused_id)
    alerts = stack.subscribe_queue(pipe.physical["AlertsTopic"])

    # WHEN both are uploaded
    _upload(stack, "flaky.pdf", flaky)
    _upload(stack, "refused.pdf", refused)

    # THEN the flaky one arrives once, on its third attempt
    wait_for(lambda: [k for k, _, _ in receiver.records() if k == flaky_id], timeout=60, what="the flaky delivery")
    assert receiver.attempts[flaky_id] == 3
    assert [k for k, _, _ in receiver.records()].count(flaky_id) == 1

    # AND the refused one is not retried blindly: its message is kept in deliver's DLQ, with an incident and alert
    dlq = pipe.physical["PipelineDeliverDLQ"]
    kept = []
    def in_dlq():
        kept.extend(drain(sqs, dlq, wait=0))
        return [m for m in kept if refused_id in m["Body"]] or None
    msgs = wait_for(in_dlq, timeout=60, what="the refused record's message in the DLQ")
    assert msgs[0]["MessageAttributes"]["palisade-error-code"]["StringValue"] == "target_refused"
    assert receiver.attempts[refused_id] == 1
    assert not [e for e in _ledger(stack) if e["outcome"] == "delivered" and refused_id in e["details"]]
    seen = []
    def alerted():
        seen.extend(json.loads(json.loads(m["Body"])["Message"]) for m in drain(sqs, alerts, wait=0))
        return [a for a in seen if a["payload"]["error_code"] == "target_refused"] or None
    alert = wait_for(alerted, what="the refusal alert")[0]["payload"]
    assert alert["function"].endswith("pipeline-deliver") and alert["kept_in"].endswith("pipeline-deliver-dlq")
