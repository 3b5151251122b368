"""CloudWatch alarm evaluation for the local stack, for the one metric moto can answer: a queue's depth.

moto stores the templates' alarms but never evaluates them. This thread does, for alarms on AWS/SQS
ApproximateNumberOfMessagesVisible (the dead-letter queue alarms): every second it samples each watched queue's
ApproximateNumberOfMessages; it takes the alarm's statistic over `period` seconds of samples (a local stand-in for
the alarm's Period) that are at least `lag` seconds old (CloudWatch, too, sees a queue's depth only after a delay:
a message taken out at once, e.g. by a redrive, may never raise the alarm), compares it with the threshold, and on
a change of state sets the alarm's state in moto and publishes what CloudWatch publishes to the new state's actions
(AlarmActions, OKActions, InsufficientDataActions): the same JSON message and subject line. Alarms on other metrics
(Lambda errors, throttles) stay as they are.
"""
import datetime as dt
import json
import threading
import time

COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
PHRASE = {
    "GreaterThanThreshold": "greater than",
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}
STATISTIC = {
    "Maximum": max,
    "Minimum": min,
    "Average": lambda xs: sum(xs) / len(xs),
    "Sum": sum,
    "SampleCount": len,
}
# CloudWatch names the region in words in its notifications.
REGION_NAMES = {"eu-west-1": "EU (Ireland)", "us-east-1": "US East (N. Virginia)"}
ACTIONS = {"ALARM": "AlarmActions", "OK": "OKActions", "INSUFFICIENT_DATA": "InsufficientDataActions"}


def _cw_time(t):
    """CloudWatch's timestamp format in notifications: 2026-11-23T10:00:00.123+0000."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def notification(alarm, old, new, reason, region, account):
    """The JSON CloudWatch publishes to an alarm's SNS actions, and its subject line."""
    region_name = REGION_NAMES.get(region, region)
    message = {
        "AlarmName": alarm["AlarmName"],
        "AlarmDescription": alarm.get("AlarmDescription"),
        "AWSAccountId": account,
        "AlarmConfigurationUpdatedTimestamp": _cw_time(alarm["AlarmConfigurationUpdatedTimestamp"]),
        "NewStateValue": new,
        "NewStateReason": reason,
        "StateChangeTime": _cw_time(dt.datetime.now(dt.timezone.utc)),
        "Region": region_name,
        "AlarmArn": alarm["AlarmArn"],
        "OldStateValue": old,
        "OKActions": alarm.get("OKActions", []),
        "AlarmActions": alarm.get("AlarmActions", []),
        "InsufficientDataActions": alarm.get("InsufficientDataActions", []),
        "Trigger": {
            "MetricName": alarm["MetricName"],
            "Namespace": alarm["Namespace"],
            "StatisticType": "Statistic",
            "Statistic": alarm.get("Statistic", "Maximum").upper(),
            "Unit": None,
            "Dimensions": [{"value": d["Value"], "name": d["Name"]} for d in alarm.get("Dimensions", [])],
            "Period": alarm["Period"],
            "EvaluationPeriods": alarm["EvaluationPeriods"],
            "ComparisonOperator": alarm["ComparisonOperator"],
            "Threshold": float(alarm["Threshold"]),
            "TreatMissingData": alarm.get("TreatMissingData", "missing"),
            "EvaluateLowSampleCountPercentile": "",
        },
    }
    subject = f'{new}: "{alarm["AlarmName"]}" in {region_name}'[:100]
    return message, subject


class AlarmEvaluator:
    def __init__(self, session, account="123456789012", interval=1.0, period=2.0, lag=2.0):
        self.session = session
        self.account = account
        self.interval = interval
        self.period = period
        self.lag = lag
        self.samples = {}  # alarm name -> [(time, value)]
        self.published = []  # (alarm name, new state) for tests and the demo
        self.stop_event = threading.Event()
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True, name="alarms")
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        if self.thread:
            self.thread.join(5)

    def _run(self):
        cw, sqs, sns = (self.session.client(s) for s in ("cloudwatch", "sqs", "sns"))
        while not self.stop_event.wait(self.interval):
            try:
                self.evaluate(cw, sqs, sns)
            except Exception:  # moto going away at shutdown, or a queue deleted under us
                if self.stop_event.is_set():
                    return

    def _depth(self, sqs, queue_name):
        try:
            url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        except sqs.exceptions.QueueDoesNotExist:
            return None
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    def evaluate(self, cw, sqs, sns):
        now = time.time()
        for page in cw.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
            for alarm in page["MetricAlarms"]:
                if (alarm.get("Namespace"), alarm.get("MetricName")) != ("AWS/SQS", "ApproximateNumberOfMessagesVisible"):
                    continue
                queue = next((d["Value"] for d in alarm.get("Dimensions", []) if d["Name"] == "QueueName"), None)
                depth = self._depth(sqs, queue) if queue else None
                if depth is None:
                    continue
                name = alarm["AlarmName"]
                kept = [s for s in self.samples.get(name, []) if s[0] > now - self.lag - self.period] + [(now, depth)]
                self.samples[name] = kept
                window = [v for t, v in kept if t <= now - self.lag]
                if not window:
                    continue  # no datapoint yet: the state stays
                value = STATISTIC.get(alarm.get("Statistic"), max)(window)
                breaching = COMPARE[alarm["ComparisonOperator"]](value, float(alarm["Threshold"]))
                new, old = ("ALARM" if breaching else "OK"), alarm["StateValue"]
                if new == old:
                    continue
                relation = ("" if breaching else "not ") + PHRASE[alarm["ComparisonOperator"]]
                reason = (f"Threshold Crossed: 1 datapoint [{float(value)} ({time.strftime('%d/%m/%y %H:%M:%S', time.gmtime(now))})] "
                          f"was {relation} the threshold ({float(alarm['Threshold'])}).")
                cw.set_alarm_state(AlarmName=name, StateValue=new, StateReason=reason)
                message, subject = notification(alarm, old, new, reason, self.session.region_name, self.account)
                for topic in alarm.get(ACTIONS[new], []):
                    sns.publish(TopicArn=topic, Message=json.dumps(message), Subject=subject)
                self.published.append((name, new))
