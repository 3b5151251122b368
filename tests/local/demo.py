"""The README's demo: the local stack from infra/, real binaries, real moto resources."""
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(__file__))

from boto3.dynamodb.conditions import Key  # noqa: E402

from palisade_local.local import LocalStack, bin_dir  # noqa: E402
from palisade_local.messages import drain, wait_for  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UTC = dt.timezone.utc
B, D, G, R, Y = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[33m"
X = "\033[0m"


def say(msg):
    print(f"\n{B}▶ {msg}{X}", flush=True)


def show(rows, cols):
    widths = [max(len(str(c)), *(len(str(r.get(c, ""))) for r in rows)) for c in cols] if rows else [len(c) for c in cols]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  " + "  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def compliance(stack):
    st = stack.stacks["compliance"]
    s3, ec2, iam, sqs = (stack.client(x) for x in ("s3", "ec2", "iam", "sqs"))
    db = stack.session.resource("dynamodb")
    tag = uuid.uuid4().hex[:6]
    now = dt.datetime.now(UTC)

    say("Security team's policies and exceptions go to the config bucket (YAML; no Rust change needed)")
    for name in ("policies.yaml", "exceptions.yaml"):
        with open(os.path.join(ROOT, "infra", "policies", name), "rb") as f:
            s3.put_object(Bucket=st.physical["ConfigBucket"], Key=f"policies/{name}", Body=f.read())
        print(f"  s3://{st.physical['ConfigBucket']}/policies/{name}")

    say("Seeding violating resources in moto")
    bucket = f"public-reports-{tag}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "owner", "Value": "ops@example.com"}]}])["Instances"][0]["InstanceId"]
    sg = ec2.create_security_group(GroupName=f"bastion-{tag}", Description="bastion")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    print(f"  bucket {bucket} (no public access block, no default encryption)")
    print(f"  instance {inst} (will be 120 days old in the simulation)")
    print(f"  security group {sg} (SSH open to 0.0.0.0/0)")
    reminders = stack.subscribe_queue(st.physical["RemindersTopic"])

    t0 = now + dt.timedelta(days=120)
    lam = stack.lambdas
    say(f"Day 0 ({t0:%Y-%m-%d}): scan")
    print("  " + json.dumps(lam.fire("compliance-scan", iso(t0))))
    for day, hours in ((0, 0), (0, 6), (1, 1), (2, 1), (7, 1), (14, 1), (21, 1), (28, 1), (35, 1)):
        t = t0 + dt.timedelta(days=day, hours=hours)
        r = lam.fire("compliance-sweep", iso(t))
        print(f"  sweep {t:%Y-%m-%d %H:%M}: " + ", ".join(f"{k}={v}" for k, v in r.items() if v))
        for m in drain(sqs, reminders, wait=0):
            d = json.loads(json.loads(m["Body"])["Message"])["payload"]
            for i in d["items"]:
                print(f"    {Y}reminder {i['reminder']}/{i['of']} to {d['owner']}{X}: {i['summary']}")
        time.sleep(0.5)

    def applied():
        got = [e for e in db.Table(st.physical["LedgerTable"]).query(
            IndexName="by-type", KeyConditionExpression=Key("record_type").eq("action"))["Items"]
            if e["resource"] in (bucket, inst, sg)]
        return got if len([e for e in got if e["outcome"] == "applied"]) >= 4 else None
    entries = wait_for(applied, timeout=30, what="enforcement")
    say("Enforcement, from the ledger")
    show([{**e, "at": e["at"][:19]} for e in sorted(entries, key=lambda e: e["at"])],
         ["at", "action", "resource", "outcome", "actor"])
    state = ec2.describe_instances(InstanceIds=[inst])["Reservations"][0]["Instances"][0]["State"]["Name"]
    print(f"  moto: instance {inst} is {G}{state}{X}; bucket blocked: "
          f"{all(s3.get_public_access_block(Bucket=bucket)['PublicAccessBlockConfiguration'].values())}")
    return t


def dashboard(stack, at, work):
    """Renders the dashboard as of the last simulated sweep and prints the operator's short-lived link to it."""
    say("Compliance dashboard (private bucket, presigned link)")
    r = stack.lambdas.fire("compliance-dashboard", iso(at + dt.timedelta(minutes=5)))
    print("  " + ", ".join(f"{k}={v}" for k, v in r["summary"].items() if v not in (None, 0)))
    cli = os.path.join(bin_dir(), "palisade")
    out = subprocess.run([cli, "dashboard-url", "--stack", stack.stacks["compliance"].name, "--expires", "1h"],
                         env={**os.environ, **stack.moto.env()}, capture_output=True, text=True, check=True)
    url = out.stdout.strip()
    copy = os.path.join(work, "dashboard.html")
    with urllib.request.urlopen(url, timeout=10) as page, open(copy, "wb") as f:
        f.write(page.read())
    print(f"  palisade dashboard-url --stack {stack.stacks['compliance'].name}:")
    print(f"  {G}{url}{X}")
    print(f"  (works while the local stack runs; a copy is at {copy})")


def pipeline(stack, receiver):
    st = stack.stacks["pipeline"]
    s3 = stack.client("s3")
    inbox = st.physical["InboxBucket"]
    quotes = sorted(f for f in os.listdir(os.path.join(ROOT, "tests", "fixtures", "quotes")) if f.endswith("-1.pdf"))
    say(f"Uploading {len(quotes)} sample quotes (three carriers, three PDF producers) into s3://{inbox}/incoming/")
    for q in quotes:
        with open(os.path.join(ROOT, "tests", "fixtures", "quotes", q), "rb") as f:
            s3.put_object(Bucket=inbox, Key=f"incoming/{q}", Body=f.read())
        print(f"  {q}")
    with open(os.path.join(ROOT, "tests", "fixtures", "broken", "encrypted.pdf"), "rb") as f:
        s3.put_object(Bucket=inbox, Key="incoming/encrypted.pdf", Body=f.read())
    print("  encrypted.pdf (password-protected: cannot be read)")
    got = wait_for(lambda: receiver.records() if len(receiver.records()) >= len(quotes) else None, timeout=120,
                   what="the records at the receiver")
    say("Records arrived at the underwriting receiver (signature checked, exactly once)")
    show([{"file": k[:12], "carrier layout": r["layout"], "quote": r["quote"]["quote_number"],
           "coverages": len(r["quote"]["coverages"]), "total": f"{r['quote']['total_premium']} {r['quote']['currency']}",
           "signature": "valid" if ok else "BAD"} for k, r, ok in got],
         ["file", "carrier layout", "quote", "coverages", "total", "signature"])
    def quarantined():
        return s3.list_objects_v2(Bucket=inbox, Prefix="quarantine/").get("Contents")
    q = wait_for(quarantined, timeout=60, what="the quarantined file")
    head = s3.head_object(Bucket=inbox, Key=q[0]["Key"])
    say("The unreadable file was quarantined, never lost, with an incident and an alert")
    print(f"  s3://{inbox}/{q[0]['Key']}  reason: {R}{head['Metadata'].get('palisade-reason')}{X}")


def main():
    work = os.path.join(ROOT, ".local", "demo")
    os.makedirs(work, exist_ok=True)
    say("Starting moto and creating the stacks from infra/ (SAM translator → CloudFormation in moto)")
    from palisade_local.receiver import Receiver
    secret = uuid.uuid4().hex
    receiver = Receiver(secret)

    def prepare(session):
        arn = session.client("secretsmanager").create_secret(Name="palisade/acme/target", SecretString=secret)["ARN"]
        return {"pipeline": {"Tenant": "acme", "Target": receiver.url, "TargetSecretArn": arn}}

    stack = LocalStack(templates=("compliance", "pipeline"), work_dir=work, prepare=prepare,
                       parameters={"compliance": {"TenantStacks": "palisade-pipeline-acme"}})
    stack.start()
    try:
        for name, s in stack.stacks.items():
            fns = sorted(n.replace(s.name + "-", "") for n in stack.lambdas.functions if n.startswith(s.name + "-"))
            print(f"  stack {s.name}: {len(s.physical)} resources; functions: " + ", ".join(fns))
        pipeline(stack, receiver)
        last_sweep = compliance(stack)
        say(f"Function logs: {stack.lambdas.log_dir}")
        dashboard(stack, last_sweep, work)
        if sys.stdin.isatty():
            input("\nPress Enter to stop the local stack (the dashboard link works until then). ")
    finally:
        stack.stop()
        receiver.stop()


if __name__ == "__main__":
    main()
