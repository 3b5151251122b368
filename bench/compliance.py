#!/usr/bin/env python3
"""Compliance benchmark: Palisade's scan, sweeps and enforcement beside Cloud Custodian, over the same resources,
each tool on a fresh moto, in rounds that alternate which tool goes first.

What runs:
  - Palisade: the compliance stack from infra/compliance.yaml, deployed into moto by the local stack
    (tests/local/palisade_local), with the release builds of compliance-scan, compliance-sweep and the six
    enforce-* functions run as processes through the Lambda Runtime API emulator. Policies:
    bench/palisade/policies.yaml. One scan, a sweep that sends the reminder digests, a sweep a day and an hour later
    that publishes every enforcement (and hourly ones while the blast-radius cap defers some), then the enforce-*
    functions drain their queues.
  - Cloud Custodian (`c7n` from PyPI, bench/requirements-c7n.txt): `custodian run` with bench/c7n/policies.yml,
    the equivalent filters and actions, one process, its default settings.
Each tool runs against a fresh moto, seeded with boto3 with the same resources (default: 2,200; see --scale). Both
run --rounds times (default 3), alternating which goes first, since this VM's speed drifts by tens of percent from
one minute to the next; the report compares each tool's median run and shows every round.

Time: moto stamps every instance and access key with the time it was created. Palisade is told the time through
its scheduled events, as in the e2e tests, so it runs at "now + 200 days"; Custodian reads the clock, so it runs
through bench/c7n/custodian_at.py, which moves `datetime.datetime.now()` forward by the same 200 days. Both
therefore find every running instance and active key 200 days old.

Counted the same way for both: every AWS API call goes through bench/apiproxy.py, a counting proxy in front of moto,
with a port per caller (each Palisade function, and Custodian). Calls of the harness (seeding, checks, the Lambda
emulator's SQS polling, which is Lambda's own work in AWS) go straight to moto and are not counted. Peak memory is
the peak resident set (VmHWM) of each Palisade function's process, read before it exits, and the maximum RSS of
the Custodian process from wait4(2). CPU is user + system time of those processes.

Usage: python3 bench/compliance.py [--scale N] [--rounds N] [--no-build] [--keep] [--report RESULTS_JSON]
Runs itself inside the local stack's venv (tests/tools/env.sh) and installs Custodian into its own venv; prints a
table and writes bench/COMPLIANCE.md.
"""
import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "palisade" / "target"))
CACHE = Path(os.environ.get("PALISADE_CACHE", Path.home() / ".cache" / "palisade"))
UTC = dt.timezone.utc
OFFSET_DAYS = 200
FUNCTIONS = ("compliance-scan", "compliance-sweep", "enforce-stop-instance", "enforce-block-public-bucket",
             "enforce-enable-bucket-encryption", "enforce-deactivate-access-key", "enforce-revoke-open-ssh",
             "enforce-revoke-expired-grant")
REGION = "eu-west-1"
TEAMS = 16


# -- environment ---------------------------------------------------------------------------------------------------

def ensure_env(argv):
    """Re-executes inside the local stack's venv (moto, boto3, SAM translator), with Custodian's venv beside it,
    both made by tests/tools/env.sh's `venv` helper (rebuilt only when their requirements change)."""
    if os.environ.get("BENCH_C7N_BIN"):
        return
    out = subprocess.run(
        ["bash", "-c", 'source tests/tools/env.sh >&2 && echo "$STACK_BIN" && venv c7n bench/requirements-c7n.txt'],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    stack_bin, c7n_bin = out.stdout.split()
    env = {**os.environ, "BENCH_C7N_BIN": c7n_bin}
    python = os.path.join(stack_bin, "python")
    os.execve(python, [python, str(Path(__file__).resolve()), *argv], env)


def template_crates():
    """Every function crate infra/compliance.yaml deploys (the local stack packages them all, used or not)."""
    return re.findall(r"CodeUri:\s*\.\./functions/([\w-]+)", (ROOT / "infra" / "compliance.yaml").read_text())


def build(skip, bin_dir=None):
    """Release host builds of the compliance stack's functions; returns their directory."""
    if bin_dir:
        return Path(bin_dir)
    crates = template_crates()
    if not skip:
        print("building the compliance stack's functions (release) ...", file=sys.stderr)
        cmd = ["nice", "cargo", "build", "--release", "--quiet"] + [a for f in crates for a in ("-p", f)]
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    bins = TARGET / "release"
    missing = [f for f in crates if not (bins / f).exists()]
    if missing:
        sys.exit(f"no release build of {', '.join(missing)} in {bins}; run without --no-build")
    return bins


class Proxy:
    """bench/apiproxy.py as a child process: one port per label, counts by label and operation."""

    def __init__(self, moto_url, labels):
        self.proc = subprocess.Popen([sys.executable, str(BENCH / "apiproxy.py"), moto_url, *labels],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ports = json.loads(self.proc.stdout.readline())

    def url(self, label):
        return f"http://127.0.0.1:{self.ports[label]}"

    def counts(self):
        with urllib.request.urlopen(self.url(next(iter(self.ports))) + "/__counts") as r:
            return json.loads(r.read())

    def reset(self):
        urllib.request.urlopen(urllib.request.Request(self.url(next(iter(self.ports))) + "/__reset", method="POST"))

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(10)


# -- the resources -------------------------------------------------------------------------------------------------

def owner(i):
    return f"team-{i % TEAMS}@example.com"


def seed(session, scale, grants_table=None):
    """Creates the benchmark's resources with boto3, straight into moto (not counted); returns what was made.

    Per `scale` units of 4: buckets (compliant, no public access block, no encryption, neither), instances (every
    fifth stopped; every third without an owner tag), security groups (SSH open to 0.0.0.0/0, to ::/0, to both,
    to a private range only), IAM users with one access key (every fourth inactive), and grants (half expired).
    Grant rows go to Palisade's grants table when there is one; the users' inline policies exist either way.
    """
    s3, ec2, iam = session.client("s3"), session.client("ec2"), session.client("iam")
    n_buckets = n_instances = n_groups = scale
    n_users, n_grants = scale * 11 // 13, scale * 5 // 13
    made = {"buckets": [], "instances": [], "groups": [], "keys": [], "grants": []}
    pab_all = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
               "RestrictPublicBuckets": True}

    def bucket(i):
        name = f"bench-{i:05d}"
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        if i % 5:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "owner", "Value": owner(i)}]})
        if i % 4 in (0, 2):
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=pab_all)
        if i % 4 in (0, 1):
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        return name

    def group(i):
        gid = ec2.create_security_group(GroupName=f"bench-{i:05d}", Description="bench",
                                        TagSpecifications=[{"ResourceType": "security-group",
                                                            "Tags": [{"Key": "owner", "Value": owner(i)}]}])["GroupId"]
        v4 = [{"CidrIp": "10.0.0.0/8"}] + ([{"CidrIp": "0.0.0.0/0"}] if i % 4 in (0, 2) else [])
        v6 = [{"CidrIpv6": "::/0"}] if i % 4 in (1, 2) else []
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": v4, "Ipv6Ranges": v6}])
        return gid

    def user(i):
        name = f"bench-{i:05d}"
        tags = [{"Key": "owner", "Value": owner(i)}] if i % 5 else []
        iam.create_user(UserName=name, Tags=tags)
        key = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
        if i % 4 == 3:
            iam.update_access_key(UserName=name, AccessKeyId=key, Status="Inactive")
        return name, key

    with cf.ThreadPoolExecutor(6) as pool:
        made["buckets"] = list(pool.map(bucket, range(n_buckets)))
        made["keys"] = list(pool.map(user, range(n_users)))
    made["groups"] = [group(i) for i in range(n_groups)]  # moto's EC2 is not safe for concurrent group creation
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    by_owner = {}
    for i in range(n_instances):
        by_owner.setdefault(None if i % 3 == 0 else owner(i), []).append(i)
    for who, idx in sorted(by_owner.items(), key=lambda kv: kv[0] or ""):
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "owner", "Value": who}]}] if who else []
        got = ec2.run_instances(ImageId=ami, MinCount=len(idx), MaxCount=len(idx), InstanceType="t3.micro",
                                **({"TagSpecifications": tags} if tags else {}))["Instances"]
        made["instances"] += list(zip(idx, (x["InstanceId"] for x in got)))
    made["instances"].sort()
    stopped = [iid for i, iid in made["instances"] if i % 5 == 0]
    for k in range(0, len(stopped), 500):
        ec2.stop_instances(InstanceIds=stopped[k:k + 500])
    made["instances"] = [iid for _, iid in made["instances"]]

    now = dt.datetime.now(UTC)
    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::123456789012:role/support"}]})
    rows = []
    for i in range(n_grants):
        gid, principal = f"g-bench-{i:05d}", made["keys"][i][0]
        expires = now - dt.timedelta(hours=1) if i % 2 == 0 else now + dt.timedelta(days=OFFSET_DAYS * 2)
        iam.put_user_policy(UserName=principal, PolicyName=f"palisade-grant-{gid}", PolicyDocument=doc)
        rows.append({"id": gid, "principal": principal, "role": "arn:aws:iam::123456789012:role/support",
                     "status": "active", "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"), "owner": owner(i),
                     "granted_by": "bench"})
        made["grants"].append((gid, principal, i % 2 == 0))
    if grants_table:
        with session.resource("dynamodb").Table(grants_table).batch_writer() as w:
            for r in rows:
                w.put_item(Item=r)
    return made


def state(session, made):
    """What is still violating, per kind, read from moto: the benchmark's check that each tool did the job."""
    s3, ec2, iam = session.client("s3"), session.client("ec2"), session.client("iam")

    def bucket(name):
        try:
            pab = all(s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"].values())
        except s3.exceptions.ClientError:
            pab = False
        try:
            s3.get_bucket_encryption(Bucket=name)
            enc = True
        except s3.exceptions.ClientError:
            enc = False
        return pab, enc

    with cf.ThreadPoolExecutor(8) as pool:
        buckets = list(pool.map(bucket, made["buckets"]))
        keys = list(pool.map(lambda uk: iam.list_access_keys(UserName=uk[0])["AccessKeyMetadata"][0]["Status"],
                             made["keys"]))
        policies = list(pool.map(lambda g: set(iam.list_user_policies(UserName=g[1])["PolicyNames"]), made["grants"]))
    running = 0
    for k in range(0, len(made["instances"]), 500):
        for r in ec2.describe_instances(InstanceIds=made["instances"][k:k + 500])["Reservations"]:
            running += sum(1 for i in r["Instances"] if i["State"]["Name"] in ("running", "pending"))
    open_groups = 0
    for k in range(0, len(made["groups"]), 500):
        for g in ec2.describe_security_groups(GroupIds=made["groups"][k:k + 500])["SecurityGroups"]:
            open_groups += any(r.get("CidrIp") == "0.0.0.0/0" for p in g["IpPermissions"] for r in p.get("IpRanges", []))\
                or any(r.get("CidrIpv6") == "::/0" for p in g["IpPermissions"] for r in p.get("Ipv6Ranges", []))
    return {
        "public buckets": sum(not pab for pab, _ in buckets),
        "unencrypted buckets": sum(not enc for _, enc in buckets),
        "running instances": running,
        "SSH open to the world": open_groups,
        "active access keys": sum(s == "Active" for s in keys),
        "expired grants in force": sum(f"palisade-grant-{gid}" in p and expired
                                       for (gid, _, expired), p in zip(made["grants"], policies)),
    }


# -- Palisade ------------------------------------------------------------------------------------------------------

def proc_stats(pid):
    """Peak resident set (KiB) and CPU seconds of a live process, from /proc."""
    hwm = int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return hwm, cpu


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def probe():
    """Seconds this machine takes for a fixed piece of single-threaded Python, timed just before each tool runs:
    the VM's speed drifts from minute to minute, and this shows by how much between the runs it compares."""
    start = time.perf_counter()
    x = 0
    for i in range(3_000_000):
        x = (x + i * i) % 1_000_003
    return time.perf_counter() - start


def handled(lam):
    """Enforcement commands the enforce-* functions have handled (a failed record is retried and counted then)."""
    return sum(size - failed for name, size, failed, _ in lam.batches if "-enforce-" in name)


def run_palisade(args, bins, work):
    """Deploys the compliance stack into a fresh moto, seeds, runs scan, sweeps and enforcement; returns figures."""
    sys.path.insert(0, str(ROOT / "tests" / "local"))
    os.environ["PALISADE_BIN_DIR"] = str(bins)
    from boto3.dynamodb.conditions import Key
    from palisade_local.local import LocalStack

    stack = LocalStack(templates=("compliance",), work_dir=str(work / "stack"))
    print("palisade: deploying infra/compliance.yaml into moto ...", file=sys.stderr)
    proxy = None
    try:
        stack.start()
        crates = template_crates()
        proxy = Proxy(stack.moto.url, crates)
        lam = stack.lambdas
        for f in crates:  # each function's own calls go through its own proxy port (processes start on first use)
            lam.function(f).env["AWS_ENDPOINT_URL"] = proxy.url(f)
        st = stack.stacks["compliance"]
        s3 = stack.client("s3")
        for name in ("policies.yaml", "exceptions.yaml"):
            s3.put_object(Bucket=st.physical["ConfigBucket"], Key=f"policies/{name}",
                          Body=(BENCH / "palisade" / name).read_bytes())
        print("palisade: seeding ...", file=sys.stderr)
        made = seed(stack.session, args.scale, st.physical["GrantsTable"])
        before = state(stack.session, made)
        proxy.reset()
        violations = stack.session.resource("dynamodb").Table(st.physical["ViolationsTable"])
        sqs = stack.client("sqs")
        queues = [m["queue_url"] for m in lam.mappings]

        def enforcing():
            n, kw = 0, {}
            while True:
                page = violations.query(IndexName="by-state", KeyConditionExpression=Key("state").eq("enforcing"),
                                        Select="COUNT", **kw)
                n += page["Count"]
                if "LastEvaluatedKey" not in page:
                    return n
                kw = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

        def queued():
            return sum(int(v) for q in queues for k, v in sqs.get_queue_attributes(
                QueueUrl=q, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"].items())

        t0 = dt.datetime.now(UTC) + dt.timedelta(days=OFFSET_DAYS)
        probe_s = probe()
        print("palisade: scan, sweeps, enforcement ...", file=sys.stderr)
        start = time.perf_counter()
        scan = lam.fire("compliance-scan", iso(t0))
        t_scan = time.perf_counter()
        sweeps = [lam.fire("compliance-sweep", iso(t0))]
        # then hourly from a day and an hour on, while the blast-radius cap defers some to the next run
        while len(sweeps) < 2 or sweeps[-1].get("deferred"):
            if len(sweeps) > 10:
                raise RuntimeError(f"still deferring after {len(sweeps)} sweeps: {sweeps[-1]}")
            sweeps.append(lam.fire("compliance-sweep", iso(t0 + dt.timedelta(days=1, hours=len(sweeps)))))
        t_sweep = time.perf_counter()
        # Done when the enforce-* functions have handled every published command, counted from the emulator's
        # own record of batches: asking moto (queue attributes, a by-state query) would load the one process
        # both tools are timed against, and moto's GetQueueAttributes walks every message in the queue.
        published = sum(s.get("enforced", 0) for s in sweeps)
        deadline = time.time() + 600
        while handled(lam) < published:
            if time.time() > deadline:
                raise RuntimeError(f"enforcement did not finish within 10 minutes: {handled(lam)}/{published}")
            time.sleep(0.1)
        end = time.perf_counter()
        if queued() or enforcing():
            raise RuntimeError(f"commands handled, but {queued()} messages queued and {enforcing()} violations "
                               "still enforcing")
        end = time.perf_counter()
        snap = proxy.counts()
        procs = {}
        for f in crates:  # the benchmark's eight, and any other the stack ran (e.g. on an incident)
            p = lam.function(f).proc
            if f in FUNCTIONS or p:
                procs[f] = proc_stats(p.pid) if p and p.poll() is None else (0, 0.0)
        after = state(stack.session, made)
        failed = [b for b in lam.batches if b[2]]
        return {
            "made": made, "before": before, "after": after, "counts": snap["calls"], "moto_seconds": snap["seconds"],
            "procs": procs, "probe": probe_s, "batches": [b[1] for b in lam.batches if "-enforce-" in b[0]],
            "scan": scan, "sweeps": sweeps, "failed_batches": failed,
            "times": {"scan": t_scan - start, "sweep": t_sweep - t_scan, "enforce": end - t_sweep,
                      "total": end - start},
        }
    finally:
        if proxy:
            proxy.stop()
        stack.stop()


# -- Cloud Custodian -----------------------------------------------------------------------------------------------

def run_custodian(args, work):
    """Starts a fresh moto, seeds the same resources, and runs `custodian run` once over bench/c7n/policies.yml."""
    sys.path.insert(0, str(ROOT / "tests" / "local"))
    import boto3
    from palisade_local.moto_server import MotoServer

    work.mkdir(parents=True, exist_ok=True)
    moto = MotoServer(log_path=str(work / "moto.log")).start()
    proxy = None
    try:
        menv = moto.env()
        os.environ.update(menv)
        session = boto3.Session(aws_access_key_id=menv["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=menv["AWS_SECRET_ACCESS_KEY"], region_name=REGION)
        proxy = Proxy(moto.url, ["custodian"])
        print("custodian: seeding ...", file=sys.stderr)
        made = seed(session, args.scale)
        before = state(session, made)
        proxy.reset()
        return custodian(args, work, session, proxy, made, before)
    finally:
        if proxy:
            proxy.stop()
        moto.stop()


def custodian(args, work, session, proxy, made, before):
    """`custodian run` over the seeded moto, through `proxy`; returns its figures."""
    out = work / "c7n-out"
    c7n_bin = Path(os.environ["BENCH_C7N_BIN"])
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url("custodian"), "AWS_DEFAULT_REGION": REGION,
           "AWS_REGION": REGION}
    cmd = [str(c7n_bin / "python"), str(BENCH / "c7n" / "custodian_at.py"), str(OFFSET_DAYS), "run", "--region",
           REGION, "-s", str(out), "--cache", str(work / "c7n-cache.pkl"), str(BENCH / "c7n" / "policies.yml")]
    probe_s = probe()
    print("custodian: run ...", file=sys.stderr)
    log = open(work / "custodian.log", "wb")
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    _, status, ru = os.wait4(p.pid, 0)
    end = time.perf_counter()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"custodian failed ({p.returncode}); see {work / 'custodian.log'}:\n"
                 + (work / "custodian.log").read_text()[-2000:])
    policies = {}
    for meta in sorted(out.glob("*/metadata.json")):
        m = json.loads(meta.read_text())
        metrics = {x["MetricName"]: x["Value"] for x in m.get("metrics", [])}
        policies[meta.parent.name] = {"resources": metrics.get("ResourceCount", 0),
                                      "resource_time": metrics.get("ResourceTime", 0.0),
                                      "action_time": metrics.get("ActionTime", 0.0)}
    snap = proxy.counts()
    return {
        "made": made, "before": before, "after": state(session, made), "counts": snap["calls"],
        "moto_seconds": snap["seconds"], "probe": probe_s,
        "rss_kb": ru.ru_maxrss, "cpu": ru.ru_utime + ru.ru_stime, "policies": policies,
        "times": {"scan": sum(p["resource_time"] for p in policies.values()),
                  "enforce": sum(p["action_time"] for p in policies.values()), "total": end - start},
    }


# -- report --------------------------------------------------------------------------------------------------------

def version(dist, python):
    return subprocess.run([python, "-c", f"from importlib.metadata import version; print(version('{dist}'))"],
                          capture_output=True, text=True).stdout.strip()


def total(counts):
    return sum(sum(c.values()) for c in counts.values())


def by_operation(counts):
    merged = {}
    for c in counts.values():
        for op, n in c.items():
            merged[op] = merged.get(op, 0) + n
    return sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def median_index(rounds, tool):
    """The round whose total wall time for `tool` is the median (the lower one of an even count)."""
    ordered = sorted(range(len(rounds)), key=lambda i: rounds[i][tool]["times"]["total"])
    return ordered[(len(ordered) - 1) // 2]


def report(results, write):
    rounds, scale = results["rounds"], results["scale"]
    pi, ci = median_index(rounds, "palisade"), median_index(rounds, "custodian")
    pal, c7n = rounds[pi]["palisade"], rounds[ci]["custodian"]
    c7n_v, moto_v = results["versions"]["c7n"], results["versions"]["moto"]
    made = pal["made"]
    n_pal = len(made["buckets"]) + len(made["instances"]) + len(made["groups"]) + len(made["keys"]) + len(made["grants"])
    n_c7n = n_pal - len(made["grants"])
    pc, cc = total(pal["counts"]), total(c7n["counts"])
    peak_fn = max(pal["procs"], key=lambda f: pal["procs"][f][0])
    pal_rss, pal_cpu = pal["procs"][peak_fn][0], sum(c for _, c in pal["procs"].values())
    pal_sum_rss = sum(r for r, _ in pal["procs"].values())
    pt, ct = pal["times"], c7n["times"]

    scan, sweeps = pal["scan"], pal["sweeps"]
    rows = [
        (f"Palisade ({len(pal['procs'])} Rust functions)", n_pal, f"{pt['scan']:.1f} s", f"{pt['sweep']:.1f} s",
         f"{pt['enforce']:.1f} s", f"{pt['total']:.1f} s", pc, pc / n_pal,
         f"{mib(pal_rss)} ({peak_fn})", f"{pal_cpu:.1f} s"),
        (f"Cloud Custodian {c7n_v}", n_c7n, f"{ct['scan']:.1f} s", "-", f"{ct['enforce']:.1f} s",
         f"{ct['total']:.1f} s", cc, cc / n_c7n, mib(c7n["rss_kb"]), f"{c7n['cpu']:.1f} s"),
    ]
    head = ("tool", "resources", "scan", "sweeps", "enforce", "total wall", "API calls", "calls/resource",
            "peak RSS (largest process)", "CPU (tool's processes)")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([r[0], str(r[1]), *r[2:6], str(r[6]), f"{r[7]:.2f}", *r[8:]]) + " |")
    table = "\n".join(lines)

    def waited(r, label=None):
        return sum(sum(v.values()) for k, v in r["moto_seconds"].items() if label in (None, k))

    fn_lines = ["| function | API calls | waiting for moto | peak RSS | CPU |", "|---|---:|---:|---:|---:|"]
    for f in pal["procs"]:
        fn_lines.append(f"| {f} | {sum(pal['counts'].get(f, {}).values())} | {waited(pal, f):.1f} s "
                        f"| {mib(pal['procs'][f][0])} | {pal['procs'][f][1]:.2f} s |")
    pol_lines = ["| policy | resources acted on | resource time | action time |", "|---|---:|---:|---:|"]
    for name, p in c7n["policies"].items():
        pol_lines.append(f"| {name} | {p['resources']} | {p['resource_time']:.1f} s | {p['action_time']:.1f} s |")
    outcome = ["| still violating | seeded | after Palisade | after Custodian |", "|---|---:|---:|---:|"]
    for k in pal["before"]:
        worst_p = max(rd["palisade"]["after"][k] for rd in rounds)
        c = "n/a" if k == "expired grants in force" else max(rd["custodian"]["after"][k] for rd in rounds)
        outcome.append(f"| {k} | {pal['before'][k]} | {worst_p} | {c} |")

    def ops(counts, n=14):
        top = by_operation(counts)
        shown = ", ".join(f"{op} {k}" for op, k in top[:n])
        rest = sum(k for _, k in top[n:])
        return shown + (f", other {rest}" if rest else "")

    outcome, fn_lines, pol_lines = "\n".join(outcome), "\n".join(fn_lines), "\n".join(pol_lines)
    deferred_note = (f"the last {len(sweeps) - 2} picking up the {sum(x.get('deferred', 0) for x in sweeps)} that "
                     f"the blast-radius cap deferred"
                     if len(sweeps) > 2 else "nothing deferred by the blast-radius cap (set to 100 %)")
    sweep_lines = "\n".join(f"{i + 1}. `{json.dumps(x)}`" for i, x in enumerate(sweeps))
    own = sum(n for op, n in by_operation(pal["counts"]) if op.startswith(("dynamodb:", "sns:", "s3:GetObject")))
    bookkeeping = (f"Of Palisade's {pc} calls, {own} ({own / pc:.0%}) keep its own state (DynamoDB: violations, "
                   f"grants, ledger; SNS: digests and enforcement commands; S3: the policy files) and "
                   f"{pc - own} read or change the account's resources; all {cc} of Custodian's read or change "
                   f"resources. moto answered {pc / pt['total']:.0f} calls a second for Palisade and "
                   f"{cc / ct['total']:.0f} for Custodian.")
    ratio = ct["total"] / pt["total"]
    speed = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
    wins = sum(rd["palisade"]["times"]["total"] < rd["custodian"]["times"]["total"] for rd in rounds)
    round_lines = ["| round | first | Palisade | Custodian | Custodian / Palisade | probe before Palisade | "
                   "probe before Custodian | Palisade's batches (mean records) |",
                   "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for i, rd in enumerate(rounds):
        p_, c_ = rd["palisade"], rd["custodian"]
        b = p_.get("batches") or [0]
        round_lines.append(
            f"| {i + 1} | {rd['order'][0].capitalize()} | {p_['times']['total']:.1f} s | {c_['times']['total']:.1f} s "
            f"| {c_['times']['total'] / p_['times']['total']:.2f} | {p_['probe']:.2f} s | {c_['probe']:.2f} s "
            f"| {len(b)} ({sum(b) / len(b):.1f}) |")
    round_lines = "\n".join(round_lines)
    peak_pal = max(max(r for r, _ in rd["palisade"]["procs"].values()) for rd in rounds)
    peak_c7n = max(rd["custodian"]["rss_kb"] for rd in rounds)
    verdict = (f"Over {len(rounds)} rounds, Palisade's median run took {pt['total']:.1f} s end to end against "
               f"Custodian's median {ct['total']:.1f} s ({speed}); Palisade was faster in {wins} of {len(rounds)} "
               f"rounds. In those median runs it "
               f"made {pc / n_pal:.2f} API calls per resource against {cc / n_c7n:.2f}, used {pal_cpu:.1f} s of CPU "
               f"against {c7n['cpu']:.1f} s, and its largest process peaked at {mib(pal_rss)} against Custodian's "
               f"{mib(c7n['rss_kb'])} ({pal_rss / c7n['rss_kb']:.0%}; all {len(pal['procs'])} functions together "
               f"{mib(pal_sum_rss)}; the highest peaks over all rounds: {mib(peak_pal)} against {mib(peak_c7n)}). "
               f"Target (issue 4): faster than Custodian "
               f"({'met' if ratio > 1 else 'not met'}) and at a fraction of its memory "
               f"({'met' if peak_pal < peak_c7n else 'not met'}).")
    cpu = "unknown CPU"
    try:
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    failed = (f"\n- {len(pal['failed_batches'])} enforcement batches failed and were retried: "
              f"{pal['failed_batches'][:3]}" if pal["failed_batches"] else "")

    md = f"""# Compliance benchmark: Palisade beside Cloud Custodian

Generated by `python3 bench/compliance.py --scale {scale} --rounds {len(rounds)}` on {results["date"]}: {cpu},
{os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}, moto {moto_v} (a fresh
`moto_server` process for each tool in each round, seeded alike), Cloud Custodian (`c7n`) {c7n_v}, Palisade's
{results["binaries"]}.

Seeded resources ({n_pal}): {len(made['buckets'])} S3 buckets, {len(made['instances'])} EC2 instances,
{len(made['groups'])} security groups, {len(made['keys'])} IAM users with one access key each, {len(made['grants'])}
temporary access grants (Palisade only: rows in its grants table, which Custodian has no equivalent for).
Policies: `bench/palisade/policies.yaml` and their Custodian equivalents in `bench/c7n/policies.yml`.

Each tool's median run of {len(rounds)} (Palisade's from round {pi + 1}, Custodian's from round {ci + 1}); every
figure below is from these two runs unless it says otherwise:

{table}

{verdict}

Every round (the rounds alternate which tool goes first; the probe is a fixed piece of single-threaded Python
timed just before each run, so it shows how fast the VM was at the time):

{round_lines}

{bookkeeping}

What each tool left violating, read back from moto (both must reach zero; the worst of all rounds):

{outcome}

Palisade, per function (each function is its own process, as each is its own Lambda; RSS is VmHWM):

{fn_lines}

The scan's report: `{json.dumps(scan)}`.
The sweeps' reports (at t0, then hourly from t0 + 1 day 1 hour):
{sweep_lines}

Custodian, per policy (from its `metadata.json`; one process runs them in turn, sharing its resource cache):

{pol_lines}

API calls by operation:
- Palisade: {ops(pal['counts'])}.
- Custodian: {ops(c7n['counts'])}.

How it is measured and what differs:
- Every call of either tool goes through `bench/apiproxy.py`, a counting proxy in front of moto with a port per
  caller, and is named from the request (X-Amz-Target, the query `Action`, or S3's method and sub-resource). The
  harness's own calls (seeding, the checks above, and the Lambda emulator's SQS polling, which AWS does for a Lambda
  function) bypass it. Both tools pay the proxy's hop.
- Palisade's phases: "scan" is the scan invocation; "sweeps" the {len(sweeps)} sweep invocations: the reminder
  digests, then {sum(x.get('enforced', 0) for x in sweeps)} enforcement messages published to the six action topics,
  {deferred_note};
  "enforce" runs from the end of the last sweep until the enforce-* functions have handled every published
  command, counted from the emulator's own record of batches, not by asking moto (enforcement starts while the
  sweeps are still publishing); then every queue is checked empty and no violation `enforcing`. The emulator
  runs one warm process per function, the six enforce-* functions in parallel, each long-polling 20 s as Lambda
  does and gathering batches of up to 10 over the template's 1 s batching window; real Lambda would also scale
  them out.
- Custodian's "scan" is the sum of its policies' resource times (listing, augmenting, filtering), "enforce" the
  sum of their action times; its total also counts the process start and policy loading. It acts on first
  sight: it has no reminders, grace periods, approvals, exceptions, ledger or undo. Palisade's figures include all
  of that: violations upserted in DynamoDB, one reminder digest per owner, every enforcement's before state in
  the ledger before the change (the claim that also stops a duplicate), the after state, and the violation
  marked enforced; the records of a batch make those writes together (one BatchGetItem and one BatchWriteItem
  for their claims, the same for their after states and marks: a group waits until every record of the batch
  still at work is waiting on one). The sweep marks violations 25 per call and
  publishes 10 commands per SNS call, one batch per action topic in turn; the scan writes new violations 25
  per call.
- moto's SQS walks the whole queue for every message it receives or SNS delivers to it (each computes all the
  queue's attributes), so that part of moto's work grows with how deep the enforcement queues get. A profile of
  moto (py-spy) put a third of its CPU there in an earlier run; Custodian has no queues.
- Time: moto stamps instances and access keys with their creation time. Palisade runs at now + {OFFSET_DAYS} days
  through its scheduled events' time; Custodian runs through `bench/c7n/custodian_at.py`, which moves its
  `datetime.datetime.now()` by the same offset (libfaketime would too, but multiplies Custodian's CPU time).
- Peak memory: Palisade's is the largest VmHWM among its function processes (each a Lambda of its own; all
  {len(pal['procs'])} together {mib(pal_sum_rss)}); Custodian's is the maximum RSS of its one process, from wait4(2). CPU is user +
  system time of the same processes; moto's work is in neither.
- moto, one Python process answering every call, is the bottleneck: summed over calls, Palisade's functions waited
  {waited(pal):.0f} s for its answers (the sweep, whose calls are made one after another, {waited(pal, 'compliance-sweep'):.0f} s
  of its {pt['sweep']:.0f} s) and Custodian {waited(c7n):.0f} s (over its threads, which overlap). Wall time here
  therefore mostly measures how many calls each tool makes and how many at once; CPU and peak memory are what the
  tool itself costs.{failed}
"""
    print()
    print(table)
    print()
    print(verdict)
    if write:
        (BENCH / "COMPLIANCE.md").write_text(md)
        print(f"\nwrote {(BENCH / 'COMPLIANCE.md').relative_to(ROOT)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=520,
                    help="buckets, instances and security groups each (users: 11/13 of it, grants: 5/13)")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/COMPLIANCE.md alone")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, Custodian's output)")
    ap.add_argument("--bin-dir", help="take the function binaries from here instead (e.g. a debug build, to try the "
                                      "harness quickly; the figures are for release builds)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="run both tools this many times, alternating which goes first, and report medians")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="only report, from the results.json of a kept run")
    args = ap.parse_args()
    if args.report:
        return report(json.loads(Path(args.report).read_text()), not args.no_write)
    ensure_env(sys.argv[1:])
    bins = build(args.no_build, args.bin_dir)
    work = Path(tempfile.mkdtemp(prefix="palisade-bench-"))
    rounds = []
    for r in range(args.rounds):
        # Alternating the order spreads the VM's drift over both tools instead of handing it to the second.
        order = ("palisade", "custodian") if r % 2 == 0 else ("custodian", "palisade")
        got = {"order": list(order)}
        for tool in order:
            print(f"round {r + 1}/{args.rounds}: {tool}", file=sys.stderr)
            here = work / f"round{r + 1}-{tool}"
            got[tool] = run_palisade(args, bins, here) if tool == "palisade" else run_custodian(args, here)
        rounds.append(got)
    kind = "release host builds" if bins == TARGET / "release" else f"function binaries from {bins}"
    results = {"scale": args.scale, "date": dt.date.today().isoformat(), "rounds": rounds, "binaries": kind,
               "versions": {"c7n": version("c7n", str(Path(os.environ["BENCH_C7N_BIN"]) / "python")),
                            "moto": version("moto", sys.executable)}}
    (work / "results.json").write_text(json.dumps(results, indent=1))
    if args.keep:
        print(f"work directory (logs, Custodian's output, results.json): {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    for i, rd in enumerate(rounds):
        for name, r in (("Palisade", rd["palisade"]), ("Custodian", rd["custodian"])):
            left = {k: v for k, v in r["after"].items()
                    if v and not (name == "Custodian" and k == "expired grants in force")}
            if left:
                print(f"WARNING: round {i + 1}: {name} left violations: {left}", file=sys.stderr)
    report(results, not args.no_write)


if __name__ == "__main__":
    main()
