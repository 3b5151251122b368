#!/usr/bin/env bash
# Post-deploy smoke test of a compliance stack, with the aws CLI and the caller's credentials:
#   tests/tools/smoke.sh STACK_NAME
# Publishes a dry-run stop-instance command for an instance that does not exist to the stack's
# enforce-stop-instance topic, and waits for the ledger entry the function records for it (outcome `gone`).
# That one message crosses SNS -> SQS -> Lambda (the deployed binary) -> EC2 -> DynamoDB, through the stack's
# KMS key, queue policy and IAM roles, and changes nothing. Exits non-zero, saying what is missing, otherwise.
# SMOKE_TIMEOUT (seconds, default 180) bounds the wait.
set -euo pipefail
stack=${1:?usage: smoke.sh STACK_NAME}
timeout=${SMOKE_TIMEOUT:-180}

resources=$(aws cloudformation list-stack-resources --stack-name "$stack" \
  --query 'StackResourceSummaries[].[LogicalResourceId, PhysicalResourceId]' --output text)
resource() { # logical id -> physical id
  awk -v id="$1" '$1 == id { print $2; found = 1 } END { if (!found) { print "smoke: no " id " in the stack" > "/dev/stderr"; exit 1 } }' <<<"$resources"
}
topic=$(resource EnforceStopInstanceTopic)
ledger=$(resource LedgerTable)
dlq=$(resource EnforceStopInstanceDLQ)

uuid() { cat /proc/sys/kernel/random/uuid; }
# A well-formed instance id that does not exist: EC2 answers InvalidInstanceID.NotFound, so the action records
# `gone` without touching anything. dry-run keeps it a no-op even if it did exist.
instance="i-0$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
correlation=$(uuid)
since=$(date -u -d '-2 minutes' +%Y-%m-%dT%H:%M:%S.000Z)
now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
message=$(cat <<EOF
{"schema_version":1,"id":"$(uuid)","correlation_id":"$correlation","tenant":"smoke-test","kind":"action.command",
 "created_at":"$now","payload":{"command":"enforce","action":"stop-instance","violation_id":"smoke-$(uuid)",
 "policy":"smoke-test","resource":{"kind":"ec2-instance","id":"$instance"},"params":{},"mode":"dry-run",
 "approved_by":null}}
EOF
)
attributes='{"tenant":{"DataType":"String","StringValue":"smoke-test"},"kind":{"DataType":"String","StringValue":"action.command"},"schema_version":{"DataType":"Number","StringValue":"1"}}'

echo "smoke: publishing a dry-run stop-instance for $instance (correlation $correlation) to $topic"
aws sns publish --topic-arn "$topic" --message "$message" --message-attributes "$attributes" --output text >/dev/null

deadline=$((SECONDS + timeout))
while :; do
  outcome=$(aws dynamodb query --table-name "$ledger" --index-name by-type \
    --key-condition-expression "record_type = :t AND #at >= :since" \
    --filter-expression "#resource = :r" \
    --expression-attribute-names '{"#at":"at","#resource":"resource"}' \
    --expression-attribute-values "{\":t\":{\"S\":\"action\"},\":since\":{\"S\":\"$since\"},\":r\":{\"S\":\"$instance\"}}" \
    --query 'Items[0].outcome.S' --output text)
  if [ "$outcome" = "gone" ]; then
    echo "smoke: ok, the ledger recorded $instance as gone"
    exit 0
  fi
  if [ "$outcome" != "None" ]; then
    echo "smoke: FAILED, the ledger recorded outcome '$outcome' for $instance (expected gone)" >&2
    exit 1
  fi
  if [ $SECONDS -ge $deadline ]; then
    waiting=$(aws sqs get-queue-attributes --queue-url "$dlq" --attribute-names ApproximateNumberOfMessages \
      --query Attributes.ApproximateNumberOfMessages --output text || echo "?")
    echo "smoke: FAILED, no ledger entry for $instance after ${timeout}s ($waiting message(s) in $dlq;" \
      "see the function's log group /aws/lambda/$stack-enforce-stop-instance)" >&2
    exit 1
  fi
  sleep 5
done
