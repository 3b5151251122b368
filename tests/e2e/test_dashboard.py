"""The compliance dashboard in a real browser: the compliance-dashboard binary renders the page from the e2e
scenario's tables, `palisade dashboard-url` presigns it, and headless Chromium (Debian's `chromium`) loads it from
the private bucket. The numbers a person would read are compared with what the ledgers and the violations table
hold, console messages must be absent (the page's Content-Security-Policy turns any external load into one), and
a screenshot is kept in tests/artifacts/."""
import datetime as dt
import glob
import html.parser
import json
import os
import re
import shutil
import subprocess
import urllib.request
import uuid

import pytest
from boto3.dynamodb.conditions import Key

from palisade_local.messages import wait_for
from test_cli import palisade
from test_compliance import UTC, World, iso

ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "artifacts")
QUOTES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "quotes")


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("chromium is not installed: tests/run.sh installs Debian's chromium package")


def browse(url, out_dir):
    """Loads `url` headless; returns (rendered DOM, console lines, screenshot path)."""
    profile = os.path.join(out_dir, f"chromium-profile-{uuid.uuid4().hex[:6]}")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-default-apps", "--disable-extensions", "--disable-sync",
        "--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = os.path.join(out_dir, "dashboard.png")
    s = subprocess.run([chromium(), *flags, f"--screenshot={shot}", "--window-size=1280,2400", url],
                       capture_output=True, text=True, timeout=120)
    assert s.returncode == 0 and os.path.getsize(shot) > 10_000, s.stderr[-2000:]
    console = [line for line in (dom.stderr + s.stderr).splitlines() if "CONSOLE" in line]
    shutil.rmtree(profile, ignore_errors=True)
    return dom.stdout, console, shot


class Metrics(html.parser.HTMLParser):
    """Text of every element carrying `data-metric`, as rendered."""

    def __init__(self):
        super().__init__()
        self.values, self._open = {}, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._open.append(a.get("data-metric"))
        if a.get("data-metric"):
            self.values[a["data-metric"]] = ""

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for m in self._open:
            if m:
                self.values[m] += data


def test_dashboard_renders_in_chromium_and_matches_the_ledgers(stack, receiver):
    w = World(stack)
    lam = stack.lambdas
    pipe = stack.stacks["pipeline"]
    t0 = dt.datetime.now(UTC) + dt.timedelta(days=400)  # after every other test's simulated days

    # GIVEN the scenario: violating resources, one active and one expired exception, an enforcement later undone,
    # and a tenant whose quote went through the pipeline
    open_sg, open_bucket = w.security_group("0.0.0.0/0"), w.bucket(False)
    w.upload_policies(f"""
exceptions:
  - policy: s3-default-encryption
    resource: {open_bucket}
    reason: Static website, reviewed.
    granted-by: alice@example.com
    expires: {iso(t0 + dt.timedelta(days=30))}
  - policy: ec2-stale-instance
    resource: i-0000000000000dead
    reason: Finished load test.
    granted-by: bob@example.com
    expires: 2026-01-31
""")
    lam.fire("compliance-scan", iso(t0))
    lam.fire("compliance-sweep", iso(t0 + dt.timedelta(hours=2)))
    wait_for(lambda: not w.world_open(open_sg), what="the open SSH rule to be revoked")
    action = wait_for(lambda: [e for e in w.ledger() if e["resource"] == open_sg and e["outcome"] == "applied"],
                      what="the ledger entry of the revocation")[0]
    palisade(stack, "undo", action["id"], "--by", "oncall@example.com", "--stack", w.st.name)
    wait_for(lambda: w.world_open(open_sg), what="the undo to restore the rule")

    quote = sorted(glob.glob(os.path.join(QUOTES, "*-0.pdf")))[0]
    with open(quote, "rb") as f:
        body = f.read() + f"\n% dashboard {uuid.uuid4()}\n".encode()  # a new file, not a duplicate upload
    stack.client("s3").put_object(Bucket=pipe.physical["InboxBucket"], Key=f"incoming/dash/{uuid.uuid4().hex}.pdf",
                                  Body=body)
    db = stack.session.resource("dynamodb")

    def entries(table, record_type):
        t = db.Table(table)
        items, kw = [], {"IndexName": "by-type", "KeyConditionExpression": Key("record_type").eq(record_type)}
        while True:
            page = t.query(**kw)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    tenant_ledger = pipe.physical["LedgerTable"]
    wait_for(lambda: sum(e["outcome"] == "delivered" for e in entries(tenant_ledger, "file")) >= 1,
             what="a delivered quote")

    # WHEN the dashboard function runs and an operator asks for its link
    written = lam.fire("compliance-dashboard", iso(t0 + dt.timedelta(hours=2, minutes=5)))
    assert written["page"] == "dashboard/index.html", written
    out = palisade(stack, "dashboard-url", "--stack", w.st.name, "--expires", "10m")
    url = out.stdout.strip()
    assert url.startswith("http") and "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url, url

    # THEN the bucket is private: without the signature there is no page
    unsigned = url.split("?")[0]
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(unsigned, timeout=10)

    # AND Chromium renders the page without a single console message, and the screenshot is kept
    dom, console, shot = browse(url, os.path.abspath(ARTIFACTS))
    assert console == [], console
    assert "<svg" in dom and "Palisade compliance" in dom

    # AND every number on it is what the tables say
    m = Metrics()
    m.feed(dom)
    shown = m.values
    viol = db.Table(w.st.physical["ViolationsTable"])
    open_items = []
    for state in ("open", "enforcing"):
        kw = {"IndexName": "by-state", "KeyConditionExpression": Key("state").eq(state)}
        open_items += viol.query(**kw)["Items"]
    actions = entries(w.st.physical["LedgerTable"], "action")
    applied = [a for a in actions if a["outcome"] == "applied"]
    undone = [a for a in applied if json.loads(a["details"]).get("undone_at")]
    incidents = entries(w.st.physical["LedgerTable"], "incident") + entries(tenant_ledger, "incident")
    files = entries(tenant_ledger, "file")

    assert int(shown["open-violations"]) == len(open_items)
    assert int(shown["enforced"]) == len(applied) and len(applied) >= 1
    assert int(shown["undone"]) == len(undone) and any(a["id"] == action["id"] for a in undone)
    assert int(shown["dry-runs"]) == sum(a["outcome"] == "dry-run" for a in actions)
    assert int(shown["open-incidents"]) == sum(i["outcome"] == "open" for i in incidents)
    assert shown["exceptions-active"] == "1" and shown["exceptions-expired"] == "1"
    by_policy = {}
    for v in open_items:
        by_policy[v["policy"]] = by_policy.get(v["policy"], 0) + 1
    for policy, n in by_policy.items():
        assert int(shown[f"by-policy:{policy}"]) == n, policy
    for outcome, metric in (("accepted", "accepted"), ("extracted", "extracted"), ("delivered", "delivered"),
                            ("quarantined", "quarantined"), ("deleted", "deleted")):
        assert int(shown[f"tenant:acme:{metric}"]) == sum(f["outcome"] == outcome for f in files), outcome
    assert int(shown["tenant:acme:delivered"]) >= 1

    # AND the JSON beside it carries the same numbers, and neither holds a customer value
    data = json.loads(urllib.request.urlopen(palisade(stack, "dashboard-url", "--stack", w.st.name, "--data")
                                             .stdout.strip(), timeout=10).read())
    assert data["summary"]["open_violations"] == len(open_items)
    assert data["tenants"][0]["delivered"] == int(shown["tenant:acme:delivered"])
    with open(quote[:-4] + ".json", encoding="utf-8") as f:
        fields = json.load(f)
    for value in (fields["insured_name"], fields["quote_number"], fields["total_premium"]):
        assert str(value) not in dom and str(value) not in json.dumps(data), "customer value on the dashboard"
    assert re.search(r"X-Amz-Expires=\d+", url)
    print(f"screenshot: {shot}")
