"""Rules every infra/ template keeps, checked offline on what CloudFormation would get.

SAM templates are translated with the same SAM translator the local stack uses (so implicit resources, such as
event source mappings, are checked too); infra/bootstrap-oidc.yaml is plain CloudFormation and is checked as it is.
The rules:
- each Lambda function has its own IAM role, with inline policies only (no managed policy could hide a grant);
- no IAM policy allows a wildcard action, and `*` resources only for actions AWS gives no resource-level form
  (ALLOWED_STAR_RESOURCE, each with its reason);
- every SQS queue a function consumes has a redrive policy to a dead-letter queue, and every SQS event source
  mapping reports batch item failures;
- each `enforce-*` function may call exactly what its crate declares (`PERMISSIONS` in functions/<crate>/src/lib.rs)
  plus the shared runner's actions (RUNNER_ACTIONS), each on its own resources;
- a function's topic, queue, dead-letter queue, log group and alarms are named after its crate (the CodeUri folder);
- every function has an explicit log group with the environment's retention, and alarms on its errors, its throttles
  and its dead-letter queue's depth that notify the topic its incidents go to: the stack's failures topic, which only
  the alert function reads; the alert function's own go to the alerts topic, so it never feeds itself;
- the alert function may look into exactly the dead-letter queues whose alarms it is told about.
"""
import copy
import glob
import os
import re

import pytest
from samtranslator.translator.transform import transform

from palisade_local import cfn_yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
INFRA = os.path.join(ROOT, "infra")
PLAIN_CLOUDFORMATION = {"bootstrap-oidc.yaml"}  # not SAM: checked untranslated
TEMPLATES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(INFRA, "*.yaml")))
SAM_TEMPLATES = [t for t in TEMPLATES if t not in PLAIN_CLOUDFORMATION]

# Actions allowed on Resource "*": the Service Authorization Reference lists no resource type for them, so IAM
# accepts nothing narrower. Anything else on "*" fails, and an action added here needs its reason.
ALLOWED_STAR_RESOURCE = {
    # EC2 Describe* calls have no resource-level permissions; the functions inspect before they act.
    "ec2:DescribeInstances": "EC2 Describe* actions have no resource-level permissions",
    "ec2:DescribeSecurityGroups": "EC2 Describe* actions have no resource-level permissions",
    # The scan lists every bucket and user of the account; neither list action has a resource type.
    "s3:ListAllMyBuckets": "list action with no resource type",
    "iam:ListUsers": "list action with no resource type",
    # The deploy role (bootstrap-oidc.yaml) creates the stacks' key; a key that does not exist yet has no ARN. The
    # policy scopes it with aws:RequestTag instead.
    "kms:CreateKey": "creates a new key: no resource type",
    # CloudFormation's AWS::KMS::Alias handler lists aliases; ListAliases has no resource type.
    "kms:ListAliases": "list action with no resource type",
    # The deploy role creates the SQS event source mappings; the mapping has no ARN before it exists. The policy
    # scopes it with the lambda:FunctionArn condition instead.
    "lambda:CreateEventSourceMapping": "no resource type; scoped by the lambda:FunctionArn condition",
}

# What the shared runner (shared/src) calls in every enforce-* function, and which of the function's resources each
# action may name: its own queue and dead-letter queue, the stack's shared tables and failures topic, the stack's
# key, its own log group.
RUNNER_ACTIONS = {
    # the SQS event source, run by Lambda with the function's role
    "sqs:ReceiveMessage": "queue",
    "sqs:DeleteMessage": "queue",
    "sqs:GetQueueAttributes": "queue",
    # poison messages kept with their error code (incident.rs)
    "sqs:SendMessage": "dlq",
    # ledger.rs, idempotency.rs, action.rs (violations)
    "dynamodb:GetItem": "table",
    "dynamodb:PutItem": "table",
    "dynamodb:UpdateItem": "table",
    "dynamodb:DeleteItem": "table",
    # action.rs: an enforcement's settled entry and violation mark, grouped per batch
    "dynamodb:BatchGetItem": "table",
    "dynamodb:BatchWriteItem": "table",
    # incidents, announced on the failures topic (incident.rs)
    "sns:Publish": "failures",
    # the stack's customer-managed key encrypts the queues, topics, tables and environment variables
    "kms:Decrypt": "key",
    "kms:DescribeKey": "key",
    "kms:GenerateDataKey": "key",
    # Lambda writes the function's logs with its role
    "logs:CreateLogStream": "logs",
    "logs:PutLogEvents": "logs",
}


# ---- loading -----------------------------------------------------------------------------------------------------
class NoManagedPolicies:
    """Stands in for SAM's ManagedPolicyLoader: our functions name no AWS managed policy, so none is looked up."""

    def load(self):
        return {}


def _parameters(template):
    """A value for every parameter: its default, else `test` for Environment, else a placeholder."""
    out = {}
    for name, p in template.get("Parameters", {}).items():
        if "Default" in p:
            out[name] = p["Default"]
        elif "AllowedValues" in p:
            out[name] = "test" if "test" in p["AllowedValues"] else p["AllowedValues"][0]
        else:
            out[name] = "acme"
    return out


def load(name):
    """(CloudFormation template, crate folder per function logical id) for infra/<name>."""
    path = os.path.join(INFRA, name)
    template = cfn_yaml.load(path)
    if name in PLAIN_CLOUDFORMATION:
        assert "Transform" not in template, f"{name} is meant to be plain CloudFormation"
        return template, {}
    sam = copy.deepcopy(template)
    crates = {}
    for logical, res in sam.get("Resources", {}).items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        code_uri = res["Properties"]["CodeUri"]
        crates[logical] = os.path.basename(os.path.normpath(os.path.join(INFRA, code_uri)))
        res["Properties"]["CodeUri"] = f"s3://palisade-test-artifacts/{crates[logical]}.zip"  # what sam package does
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        return transform(sam, _parameters(template), NoManagedPolicies()), crates


@pytest.fixture(scope="module", params=TEMPLATES)
def template(request):
    cfn, crates = load(request.param)
    return request.param, cfn, crates


@pytest.fixture(scope="module", params=SAM_TEMPLATES)
def sam_template(request):
    cfn, crates = load(request.param)
    return request.param, cfn, crates


# ---- reading intrinsics ------------------------------------------------------------------------------------------
def target(value):
    """The logical id a {"Ref": X} or {"Fn::GetAtt": [X, ...]} points at, else None."""
    if isinstance(value, dict) and len(value) == 1:
        (k, v), = value.items()
        if k == "Ref" and isinstance(v, str):
            return v
        if k == "Fn::GetAtt":
            return v[0] if isinstance(v, list) else v.split(".")[0]
    return None


def get_att(value):
    """(logical id, attribute) of an Fn::GetAtt, else None."""
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
        v = value["Fn::GetAtt"]
        return tuple(v) if isinstance(v, list) else tuple(v.split(".", 1))
    return None


def sub_text(value):
    """The text of an Fn::Sub (without variables of its own), else the value itself."""
    if isinstance(value, dict) and list(value) == ["Fn::Sub"]:
        v = value["Fn::Sub"]
        return v if isinstance(v, str) else v[0]
    return value


def listed(value):
    return value if isinstance(value, list) else [value]


def resources(cfn, type_):
    return {k: v for k, v in cfn.get("Resources", {}).items() if v.get("Type") == type_}


def identity_policies(cfn):
    """(where, policy document) of every identity-based policy: inline role/user/group policies and policy resources."""
    out = []
    for logical, res in cfn.get("Resources", {}).items():
        props = res.get("Properties", {})
        if res.get("Type") in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            for p in props.get("Policies", []):
                out.append((f"{logical}/{p.get('PolicyName')}", p["PolicyDocument"]))
        elif res.get("Type") in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::IAM::RolePolicy"):
            out.append((logical, props["PolicyDocument"]))
    return out


def statements(doc):
    return listed(doc.get("Statement", []))


def role_statements(cfn, role):
    props = cfn["Resources"][role]["Properties"]
    return [s for p in props.get("Policies", []) for s in statements(p["PolicyDocument"])]


def functions(cfn):
    return resources(cfn, "AWS::Lambda::Function")


def sqs_mappings(cfn, function=None):
    """Event source mappings from SQS queues of this template, optionally of one function: {logical: (queue, props)}."""
    out = {}
    for logical, res in resources(cfn, "AWS::Lambda::EventSourceMapping").items():
        p = res["Properties"]
        queue = target(p.get("EventSourceArn"))
        if queue is None or cfn["Resources"].get(queue, {}).get("Type") != "AWS::SQS::Queue":
            continue
        if function is None or target(p.get("FunctionName")) == function:
            out[logical] = (queue, p)
    return out


def dlq_of(cfn, queue):
    redrive = cfn["Resources"][queue]["Properties"].get("RedrivePolicy") or {}
    return target(redrive.get("deadLetterTargetArn"))


def enforce_functions(cfn, crates):
    return {f: crates[f] for f in functions(cfn) if crates.get(f, "").startswith("enforce-")}


def declared_permissions(crate):
    """The IAM actions the crate's Action declares: `const PERMISSIONS: &'static [&'static str] = &[...]`."""
    src = open(os.path.join(ROOT, "functions", crate, "src", "lib.rs"), encoding="utf-8").read()
    m = re.search(r"const\s+PERMISSIONS\s*:\s*&'static\s*\[\s*&'static\s+str\s*\]\s*=\s*&\[(.*?)\]\s*;", src, re.S)
    assert m, f"functions/{crate}/src/lib.rs declares no `const PERMISSIONS: &'static [&'static str] = &[...]`"
    return set(re.findall(r'"([^"]+)"', m.group(1)))


# ---- IAM -----------------------------------------------------------------------------------------------------------
def test_no_wildcard_actions_and_star_resources_only_where_aws_has_no_other(template):
    name, cfn, _ = template
    problems = []
    policies = identity_policies(cfn)
    assert policies or name not in ("compliance.yaml", "bootstrap-oidc.yaml"), f"{name}: no IAM policy found"
    for where, doc in policies:
        for s in statements(doc):
            sid = f"{name} {where} {s.get('Sid', '')}".strip()
            if "NotAction" in s or "NotResource" in s:
                problems.append(f"{sid}: NotAction/NotResource grants everything else")
            actions = listed(s.get("Action", []))
            for a in actions:
                if "*" in a:
                    problems.append(f"{sid}: wildcard action {a}")
            if s.get("Effect") == "Allow" and "*" in listed(s.get("Resource", [])):
                for a in actions:
                    if a not in ALLOWED_STAR_RESOURCE:
                        problems.append(f'{sid}: {a} on Resource "*" (it has a resource-level form: name the resources)')
    assert not problems, "\n".join(problems)


def test_each_function_has_its_own_role_with_inline_policies_only(template):
    name, cfn, _ = template
    seen = {}
    for fn, res in functions(cfn).items():
        ref = get_att(res["Properties"].get("Role"))
        assert ref and ref[1] == "Arn", f"{name} {fn}: Role is not the ARN of a role in this template"
        role = ref[0]
        assert cfn["Resources"].get(role, {}).get("Type") == "AWS::IAM::Role", f"{name} {fn}: {role} is not an IAM role"
        assert role not in seen, f"{name}: {fn} and {seen[role]} share the role {role}"
        seen[role] = fn
        props = cfn["Resources"][role]["Properties"]
        assert not props.get("ManagedPolicyArns"), (
            f"{name} {fn}: role {role} has managed policies {props['ManagedPolicyArns']} (with SAM `Policies:` it gets "
            f"AWSLambdaBasicExecutionRole and AWSLambdaSQSQueueExecutionRole, which allow logs and sqs on \"*\"); "
            f"give the function an explicit role with inline statements, as infra/compliance.yaml does"
        )
        trust = statements(props["AssumeRolePolicyDocument"])
        principals = [p for s in trust for p in listed(s.get("Principal", {}).get("Service", []))]
        assert principals == ["lambda.amazonaws.com"], f"{name} {fn}: role {role} is assumable by {principals}"


# ---- SQS -----------------------------------------------------------------------------------------------------------
def test_every_consumed_queue_redrives_to_a_dead_letter_queue(sam_template):
    name, cfn, _ = sam_template
    for mapping, (queue, _) in sqs_mappings(cfn).items():
        props = cfn["Resources"][queue]["Properties"]
        redrive = props.get("RedrivePolicy")
        assert redrive, f"{name}: {queue} (consumed by {mapping}) has no RedrivePolicy"
        dlq = target(redrive.get("deadLetterTargetArn"))
        assert dlq and cfn["Resources"].get(dlq, {}).get("Type") == "AWS::SQS::Queue", (
            f"{name}: {queue}'s RedrivePolicy does not name a queue of this template as deadLetterTargetArn"
        )
        assert "maxReceiveCount" in redrive, f"{name}: {queue}'s RedrivePolicy has no maxReceiveCount"
        assert dlq != queue


def test_every_sqs_event_source_reports_batch_item_failures(sam_template):
    name, cfn, _ = sam_template
    for mapping, (_, p) in sqs_mappings(cfn).items():
        assert "ReportBatchItemFailures" in p.get("FunctionResponseTypes", []), (
            f"{name} {mapping}: without FunctionResponseTypes [ReportBatchItemFailures] one bad record fails its whole "
            f"batch"
        )


# ---- enforce-* functions -------------------------------------------------------------------------------------------
ENFORCE_CONCURRENCY = int(re.search(r"pub const ENFORCE_CONCURRENCY: usize = (\d+);",
                                    open(os.path.join(ROOT, "shared", "src", "action.rs")).read()).group(1))


def check_enforce_batches(name, fn, mapping):
    """A batch's bookkeeping is one grouped write per step only if its records run at once and batches fill up."""
    size = int(mapping.get("BatchSize", 10))
    assert size <= ENFORCE_CONCURRENCY, (
        f"{name} {fn}: BatchSize {size} exceeds ENFORCE_CONCURRENCY {ENFORCE_CONCURRENCY} (shared/src/action.rs), so "
        f"a batch's records would not all be handled at once and their writes would split")
    window = int(mapping.get("MaximumBatchingWindowInSeconds", 0))
    assert 1 <= window <= 5, (
        f"{name} {fn}: MaximumBatchingWindowInSeconds {window}: without a window Lambda invokes with whatever one "
        f"poll returned (often one message), and each batch pays its bookkeeping calls again; over 5 s only delays")


def test_enforce_functions_may_call_exactly_their_crates_permissions_plus_the_runner_on_their_own_resources(sam_template):
    name, cfn, crates = sam_template
    for fn, crate in enforce_functions(cfn, crates).items():
        props = cfn["Resources"][fn]["Properties"]
        role = get_att(props["Role"])[0]
        mappings = sqs_mappings(cfn, fn)
        assert len(mappings) == 1, f"{name} {fn}: expected one SQS event source, found {len(mappings)}"
        (queue, mapping), = mappings.values()
        check_enforce_batches(name, fn, mapping)
        env = props.get("Environment", {}).get("Variables", {})
        log_group = target(props.get("LoggingConfig", {}).get("LogGroup"))
        own = {
            "queue": {queue},
            "dlq": {dlq_of(cfn, queue)},
            # not the idempotency table: an enforcement's ledger write is its own claim (Dedup::Handler)
            "table": {target(env.get(v)) for v in
                      ("PALISADE_LEDGER_TABLE", "PALISADE_VIOLATIONS_TABLE", "PALISADE_GRANTS_TABLE")},
            "failures": {target(env.get("PALISADE_FAILURES_TOPIC_ARN"))},
            "key": set(resources(cfn, "AWS::KMS::Key")),
            "logs": {log_group},
        }
        assert target(env.get("PALISADE_DLQ_URL")) == dlq_of(cfn, queue), (
            f"{name} {fn}: PALISADE_DLQ_URL is not its queue's dead-letter queue")
        granted = set()
        for s in role_statements(cfn, role):
            assert s.get("Effect") == "Allow"
            actions = set(listed(s["Action"]))
            runner = actions & set(RUNNER_ACTIONS)
            if runner:
                assert runner == actions, f"{name} {fn} {s.get('Sid')}: mixes runner actions with the action's own"
                kinds = {RUNNER_ACTIONS[a] for a in actions}
                allowed = set().union(*(own[k] for k in kinds)) - {None}
                for r in listed(s["Resource"]):
                    assert target(r) in allowed, (
                        f"{name} {fn} {s.get('Sid')}: {sorted(actions)} on {r}, which is not one of its own "
                        f"{'/'.join(sorted(kinds))} resources {sorted(allowed)}"
                    )
            else:
                granted |= actions
        # an action's own calls on the stack's tables (the grants table) are checked with the runner's above
        declared = declared_permissions(crate) - set(RUNNER_ACTIONS)
        assert granted == declared, (
            f"{name} {fn}: the role allows {sorted(granted)} besides the runner's actions, but "
            f"functions/{crate}/src/lib.rs declares PERMISSIONS {sorted(declared)}"
        )


def test_names_derive_from_the_crate(sam_template):
    name, cfn, crates = sam_template
    for fn, crate in crates.items():
        props = cfn["Resources"][fn]["Properties"]
        stem = "${AWS::StackName}-" + crate
        assert sub_text(props.get("FunctionName")) == stem, f"{name} {fn}: FunctionName is not !Sub {stem}"
        for mapping, (queue, _) in sqs_mappings(cfn, fn).items():
            q = cfn["Resources"][queue]["Properties"]
            assert sub_text(q.get("QueueName")) == stem, f"{name} {queue}: QueueName is not !Sub {stem}"
            dlq = dlq_of(cfn, queue)
            assert sub_text(cfn["Resources"][dlq]["Properties"].get("QueueName")) == stem + "-dlq", (
                f"{name} {dlq}: QueueName is not !Sub {stem}-dlq")
            topics = [t for t, res in resources(cfn, "AWS::SNS::Topic").items()
                      if any(target(s.get("Endpoint")) == queue for s in res["Properties"].get("Subscription", []))]
            topics += [target(res["Properties"]["TopicArn"]) for res in resources(cfn, "AWS::SNS::Subscription").values()
                       if target(res["Properties"].get("Endpoint")) == queue]
            buckets = [b for b, res in resources(cfn, "AWS::S3::Bucket").items()
                       if any(target(c.get("Queue")) == queue for c in
                              res.get("Properties", {}).get("NotificationConfiguration", {}).get("QueueConfigurations", []))]
            assert topics or buckets, f"{name} {queue}: no topic or bucket of this template delivers to it"
            if not crate.startswith("enforce-"):
                continue  # pipeline steps consume event topics (file-accepted, quote-extracted), named after the event
            for t in topics:
                assert sub_text(cfn["Resources"][t]["Properties"].get("TopicName")) == stem, (
                    f"{name} {t}: TopicName is not !Sub {stem}")


# ---- logs and alarms -----------------------------------------------------------------------------------------------
def test_every_function_logs_to_its_own_log_group_with_the_environments_retention(sam_template):
    name, cfn, crates = sam_template
    for fn, crate in crates.items():
        group = target(cfn["Resources"][fn]["Properties"].get("LoggingConfig", {}).get("LogGroup"))
        assert group and cfn["Resources"].get(group, {}).get("Type") == "AWS::Logs::LogGroup", (
            f"{name} {fn}: LoggingConfig.LogGroup does not !Ref a log group of this template")
        p = cfn["Resources"][group]["Properties"]
        assert sub_text(p.get("LogGroupName")) == "/aws/lambda/${AWS::StackName}-" + crate
        assert p.get("RetentionInDays") == {"Fn::FindInMap": ["Env", {"Ref": "Environment"}, "LogRetentionDays"]}, (
            f"{name} {group}: RetentionInDays is not the Env mapping's LogRetentionDays")


def _alarms_watching(cfn, namespace, metric, dim, logical):
    return [a for a, res in resources(cfn, "AWS::CloudWatch::Alarm").items()
            if res["Properties"].get("Namespace") == namespace and res["Properties"].get("MetricName") == metric
            and any(d.get("Name") == dim and target(d.get("Value")) == logical
                    for d in res["Properties"].get("Dimensions", []))]


def _env(cfn, fn):
    return cfn["Resources"][fn]["Properties"].get("Environment", {}).get("Variables", {})


def _dead_letter_queues(cfn, fn):
    """A function's dead-letter queues: its SQS event sources' redrive targets and its own (asynchronous) one."""
    dlqs = [dlq_of(cfn, q) for q, _ in sqs_mappings(cfn, fn).values()]
    own = cfn["Resources"][fn]["Properties"].get("DeadLetterConfig", {}).get("TargetArn")
    return dlqs + ([target(own)] if target(own) else [])


def _alert_function(name, cfn, crates):
    found = [fn for fn, crate in crates.items() if crate == "alert"]
    assert len(found) == 1, f"{name}: expected one function of crate `alert`, found {found}"
    return found[0]


def test_every_function_and_dead_letter_queue_has_alarms_that_notify_where_its_incidents_go(sam_template):
    name, cfn, crates = sam_template
    alarms = resources(cfn, "AWS::CloudWatch::Alarm")
    for fn in crates:
        failures = target(_env(cfn, fn).get("PALISADE_FAILURES_TOPIC_ARN"))
        assert failures, f"{name} {fn}: no PALISADE_FAILURES_TOPIC_ARN"
        wanted = [("AWS/Lambda", "Errors", "FunctionName", fn), ("AWS/Lambda", "Throttles", "FunctionName", fn)]
        wanted += [("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", d) for d in _dead_letter_queues(cfn, fn)]
        for namespace, metric, dim, logical in wanted:
            found = _alarms_watching(cfn, namespace, metric, dim, logical)
            assert found, f"{name} {fn}: no alarm on {namespace} {metric} of {logical}"
            for a in found:
                actions = [target(x) for x in alarms[a]["Properties"].get("AlarmActions", [])]
                assert failures in actions, f"{name} {a}: does not notify {failures}, where {fn}'s incidents go"


def test_incidents_and_alarms_reach_the_alert_function_and_it_never_feeds_itself(sam_template):
    name, cfn, crates = sam_template
    alert = _alert_function(name, cfn, crates)
    alerts = target(_env(cfn, alert).get("PALISADE_ALERTS_TOPIC_ARN"))
    assert alerts and cfn["Resources"][alerts]["Type"] == "AWS::SNS::Topic"
    assert target(_env(cfn, alert).get("PALISADE_FAILURES_TOPIC_ARN")) == alerts, (
        f"{name}: the alert function's own incidents must go to the alerts topic, not back into what it reads")
    (queue, _), = sqs_mappings(cfn, alert).values()
    read = {target(res["Properties"]["TopicArn"]) for res in resources(cfn, "AWS::SNS::Subscription").values()
            if target(res["Properties"].get("Endpoint")) == queue}
    for fn in crates:
        if fn == alert:
            continue
        failures = target(_env(cfn, fn).get("PALISADE_FAILURES_TOPIC_ARN"))
        assert failures != alerts, f"{name} {fn}: announces incidents on the alerts topic, bypassing the alert function"
        assert failures in read, f"{name} {fn}: its incidents go to {failures}, which the alert function does not read"
    # every alarm but the alert function's own notifies a topic the alert function reads
    own = {a for m in ("Errors", "Throttles") for a in _alarms_watching(cfn, "AWS/Lambda", m, "FunctionName", alert)}
    own |= {a for d in _dead_letter_queues(cfn, alert)
            for a in _alarms_watching(cfn, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", d)}
    for a, res in resources(cfn, "AWS::CloudWatch::Alarm").items():
        actions = {target(x) for x in res["Properties"].get("AlarmActions", [])}
        if a in own:
            assert actions == {alerts}, f"{name} {a}: the alert function's alarms notify the alerts topic only"
        else:
            assert actions and actions <= read, f"{name} {a}: notifies {sorted(actions)}, not what the alert function reads"


def test_the_alert_function_may_look_into_exactly_the_dead_letter_queues_it_hears_about(sam_template):
    name, cfn, crates = sam_template
    alert = _alert_function(name, cfn, crates)
    (queue, _), = sqs_mappings(cfn, alert).values()
    read = {target(res["Properties"]["TopicArn"]) for res in resources(cfn, "AWS::SNS::Subscription").values()
            if target(res["Properties"].get("Endpoint")) == queue}
    heard = set()
    for res in resources(cfn, "AWS::CloudWatch::Alarm").values():
        p = res["Properties"]
        if (p.get("Namespace"), p.get("MetricName")) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible") and \
                {target(x) for x in p.get("AlarmActions", [])} & read:
            heard |= {target(d["Value"]) for d in p.get("Dimensions", []) if d.get("Name") == "QueueName"}
    role = get_att(cfn["Resources"][alert]["Properties"]["Role"])[0]
    peek = [s for s in role_statements(cfn, role) if "sqs:ChangeMessageVisibility" in listed(s["Action"])]
    assert len(peek) == 1, f"{name} {role}: expected one statement that peeks dead-letter queues"
    assert "sqs:DeleteMessage" not in listed(peek[0]["Action"]), f"{name} {role}: peeking must never delete"
    may = {target(r) for r in listed(peek[0]["Resource"])}
    assert may == heard, (
        f"{name} {role}: may peek {sorted(may - {None})}, but alarms announce the dead-letter queues {sorted(heard)}")


# ---- the OIDC bootstrap --------------------------------------------------------------------------------------------
def test_the_deploy_role_trusts_only_this_repositorys_main_branch_and_production_environment():
    cfn, _ = load("bootstrap-oidc.yaml")
    roles = resources(cfn, "AWS::IAM::Role")
    assert roles, "bootstrap-oidc.yaml has no role"
    for role, res in roles.items():
        for s in statements(res["Properties"]["AssumeRolePolicyDocument"]):
            assert s["Action"] == "sts:AssumeRoleWithWebIdentity", f"{role}: trusts {s['Action']}"
            assert set(s.get("Condition", {})) == {"StringEquals"}, f"{role}: use StringEquals only (no wildcards)"
            cond = s["Condition"]["StringEquals"]
            assert cond.get("token.actions.githubusercontent.com:aud") == "sts.amazonaws.com"
            subjects = sorted(sub_text(v) for v in listed(cond.get("token.actions.githubusercontent.com:sub")))
            assert subjects == ["repo:${Repository}:environment:production", "repo:${Repository}:ref:refs/heads/main"], (
                f"{role}: trusts {subjects}")


# ---- tenant isolation ----------------------------------------------------------------------------------------------
def _s3_targets(resource):
    """The logical ids of the buckets an S3 resource entry names: GetAtt X.Arn, or `${X.Arn}/...` in a Sub."""
    t = target(resource)
    if t:
        return {t}
    text = sub_text(resource)
    if isinstance(text, str):
        return set(re.findall(r"\$\{(\w+)\.Arn\}", text)) or {text}
    return {json_text(resource)}


def json_text(value):
    return repr(value)


def test_a_tenant_stacks_roles_name_only_that_tenants_buckets():
    cfn, _ = load("pipeline.yaml")
    own = set(resources(cfn, "AWS::S3::Bucket"))
    assert own == {"InboxBucket", "ProcessedBucket"}
    for role in resources(cfn, "AWS::IAM::Role"):
        for s in role_statements(cfn, role):
            if not any(a.startswith("s3:") for a in listed(s["Action"])):
                continue
            for r in listed(s["Resource"]):
                named = _s3_targets(r)
                assert named <= own, (
                    f"{role} {s.get('Sid')}: S3 access on {r}, which is not one of this tenant stack's buckets {sorted(own)}"
                )
    # and the buckets themselves are named after the stack, i.e. after the tenant
    for b in own:
        name = sub_text(cfn["Resources"][b]["Properties"]["BucketName"])
        assert name.startswith("${AWS::StackName}-"), f"{b}: {name}"
