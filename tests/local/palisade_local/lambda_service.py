"""A small local Lambda service over moto.

It reads what the stack created (functions with their environment, timeout and code; SQS event source mappings;
EventBridge schedules), serves the Lambda Runtime API on 127.0.0.1, and runs each function's `bootstrap` from its
code package as a process, exactly as Lambda's provided.al2023 runtime does. SQS mappings are polled in batches
(BatchSize, gathered over MaximumBatchingWindowInSeconds when set);
partial batch responses are honoured (only the listed records stay in the queue), failed records come back after
the queue's visibility timeout, and moto's redrive policy moves them to the dead-letter queue once
maxReceiveCount is reached. Scheduled functions are fired on demand.

moto would otherwise try to run mapped functions itself (in Docker) whenever a message arrives, so the service
takes the mappings over and disables them in moto.
"""
import io
import json
import os
import queue
import subprocess
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import deploy

# Lambda's SQS pollers long-poll for 20 s. A shorter wait only adds empty ReceiveMessage calls, and every call
# costs moto, which serves the functions too, the same fixed overhead.
POLL_WAIT_S = 20


# The message attributes Lambda puts in an SQS event record.
LAMBDA_ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"]


class InvokeError(Exception):
    def __init__(self, error_type, message):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class _Invocation:
    def __init__(self, event, timeout_s):
        self.id = str(uuid.uuid4())
        self.event = event
        self.deadline_ms = int((time.time() + timeout_s) * 1000)
        self.done = threading.Event()
        self.result = None
        self.error = None


class FunctionInstance:
    """One function: its Runtime API endpoint and its process (started on first use, restarted after a crash)."""

    def __init__(self, config, bootstrap, base_env, log_dir):
        self.name = config["FunctionName"]
        self.arn = config["FunctionArn"]
        self.timeout = config.get("Timeout", 3)
        self.memory = config.get("MemorySize", 128)
        self.env = {k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()}
        self.bootstrap = bootstrap
        self.base_env = base_env
        self.log_path = os.path.join(log_dir, f"{self.name}.log")
        # a new stack starts with empty logs: a test reading a log must never see a line from an earlier run
        open(self.log_path, "wb").close()
        self.pending = queue.Queue()
        self.current = None
        self.init_error = None
        self.proc = None
        self.lock = threading.Lock()
        self.invocations = 0
        self.records = 0  # SQS records whose invocation has ended (a batch may carry several deliveries)
        self._serve()

    # -- Runtime API --------------------------------------------------------------------------------------
    def _serve(self):
        inst = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, code, body=b"", headers=None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self):
                if self.path.endswith("/runtime/invocation/next"):
                    inv = inst.pending.get()
                    inst.current = inv
                    self._reply(200, json.dumps(inv.event).encode(), {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": inv.id,
                        "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": inst.arn,
                        "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                    })
                else:
                    self._reply(404)

            def do_POST(self):
                body = self._body()
                parts = self.path.split("/")
                if self.path.endswith("/runtime/init/error"):
                    inst.init_error = body.decode(errors="replace")
                    self._reply(202, b"{}")
                    return
                if len(parts) >= 6 and parts[-3] == "invocation":
                    inv = inst.current
                    if inv is None or inv.id != parts[-2]:
                        self._reply(400, b'{"errorMessage":"unknown request id"}')
                        return
                    if parts[-1] == "response":
                        inv.result = json.loads(body) if body else None
                    else:
                        try:
                            err = json.loads(body)
                        except ValueError:
                            err = {"errorType": "Unknown", "errorMessage": body.decode(errors="replace")}
                        inv.error = (err.get("errorType", "Unknown"), err.get("errorMessage", ""))
                    inst.current = None
                    inv.done.set()
                    self._reply(202, b"{}")
                    return
                self._reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.api = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # -- process ------------------------------------------------------------------------------------------
    def _ensure_running(self):
        if self.proc and self.proc.poll() is None:
            return
        self.init_error = None
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **self.base_env,
            **self.env,
            "AWS_LAMBDA_RUNTIME_API": self.api,
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
        }
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.bootstrap], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=os.path.dirname(self.bootstrap))
        log.close()

    def invoke(self, event):
        """Runs one invocation; returns the function's response or raises InvokeError."""
        with self.lock:  # one invocation at a time per function, like a single warm sandbox
            self.invocations += 1
            try:
                return self._invoke(event)
            finally:
                self.records += len(event.get("Records", [])) if isinstance(event, dict) else 0

    def _invoke(self, event):
        """One invocation in the warm process (the caller holds the lock)."""
        self._ensure_running()
        inv = _Invocation(event, self.timeout)
        self.pending.put(inv)
        while not inv.done.wait(0.05):
            if self.proc.poll() is not None:
                self._drain(inv)
                reason = self.init_error or f"process exited with status {self.proc.returncode}"
                raise InvokeError("Runtime.ExitError", reason)
            if time.time() * 1000 > inv.deadline_ms + 1000:
                self.proc.kill()
                self.proc.wait()
                self._drain(inv)
                raise InvokeError("Sandbox.Timedout", f"task timed out after {self.timeout} s")
        if inv.error:
            raise InvokeError(*inv.error)
        return inv.result

    def _drain(self, inv):
        # the invocation never reached (or never left) the dead process: drop it
        try:
            while True:
                self.pending.get_nowait()
        except queue.Empty:
            pass
        self.current = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.server.shutdown()


class LambdaService:
    def __init__(self, session, moto_env, work_dir):
        self.session = session
        self.moto_env = moto_env
        self.work_dir = work_dir
        self.log_dir = os.path.join(work_dir, "logs")
        os.makedirs(self.log_dir, exist_ok=True)
        self.functions = {}
        self.mappings = []
        self.schedules = []
        self.stop_event = threading.Event()
        self.threads = []
        self.batches = []  # (function, size, failures) for tests and the demo

    def _code(self, name):
        fn = self.session.client("lambda").get_function(FunctionName=name)
        key = fn["Code"]["Location"].rsplit("/", 1)[-1]
        data = self.session.client("s3").get_object(Bucket=deploy.ARTIFACTS_BUCKET, Key=key)["Body"].read()
        dest = os.path.join(self.work_dir, "code", name)
        os.makedirs(dest, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            z.extractall(dest)
        boot = os.path.join(dest, "bootstrap")
        os.chmod(boot, 0o755)
        return fn["Configuration"], boot

    def discover(self):
        lam = self.session.client("lambda")
        for page in lam.get_paginator("list_functions").paginate():
            for f in page["Functions"]:
                config, boot = self._code(f["FunctionName"])
                self.functions[f["FunctionName"]] = FunctionInstance(config, boot, self.moto_env, self.log_dir)
        by_arn = {f.arn: f for f in self.functions.values()}
        for m in lam.list_event_source_mappings()["EventSourceMappings"]:
            if ":sqs:" not in m["EventSourceArn"]:
                continue
            fn = by_arn.get(m["FunctionArn"]) or self.functions.get(m["FunctionArn"].rsplit(":", 1)[-1])
            lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False)
            self.mappings.append({
                "function": fn,
                "queue_arn": m["EventSourceArn"],
                "batch_size": int(m.get("BatchSize") or 10),
                "window_s": int(m.get("MaximumBatchingWindowInSeconds") or 0),
                "report_failures": "ReportBatchItemFailures" in (m.get("FunctionResponseTypes") or []),
            })
        events = self.session.client("events")
        for rule in events.list_rules().get("Rules", []):
            if not rule.get("ScheduleExpression"):
                continue
            for t in events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", []):
                fn = by_arn.get(t["Arn"]) or self.functions.get(t["Arn"].rsplit(":", 1)[-1])
                if fn:
                    self.schedules.append({"rule": rule, "function": fn, "input": t.get("Input")})
        return self

    def start(self):
        sqs = self.session.client("sqs")
        for m in self.mappings:
            name = m["queue_arn"].rsplit(":", 1)[-1]
            m["queue_url"] = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            t = threading.Thread(target=self._poll, args=(m,), daemon=True, name=f"poll-{name}")
            t.start()
            self.threads.append(t)
        return self

    def _poll(self, m):
        sqs = self.session.client("sqs")
        region = self.session.region_name
        while not self.stop_event.is_set():
            try:
                got = self._gather(sqs, m)
            except Exception:  # moto going away at shutdown
                if self.stop_event.is_set():
                    return
                time.sleep(0.2)
                continue
            if not got:
                continue
            records = [{
                "messageId": msg["MessageId"],
                "receiptHandle": msg["ReceiptHandle"],
                "body": msg["Body"],
                "attributes": msg.get("Attributes", {}),
                "messageAttributes": {
                    k: {"stringValue": v.get("StringValue"), "binaryValue": None, "stringListValues": [],
                        "binaryListValues": [], "dataType": v.get("DataType")}
                    for k, v in msg.get("MessageAttributes", {}).items()
                },
                "md5OfBody": msg.get("MD5OfBody"),
                "eventSource": "aws:sqs",
                "eventSourceARN": m["queue_arn"],
                "awsRegion": region,
            } for msg in got]
            try:
                resp = m["function"].invoke({"Records": records})
            except InvokeError as e:
                # the whole batch returns to the queue after its visibility timeout, as in Lambda
                self.batches.append((m["function"].name, len(records), len(records), str(e)))
                continue
            failed = set()
            if m["report_failures"]:
                try:
                    failed = {f["itemIdentifier"] for f in (resp or {}).get("batchItemFailures", [])}
                except (AttributeError, KeyError, TypeError):
                    failed = {r["messageId"] for r in records}  # an unreadable response fails the batch
            done = [{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(records) if r["messageId"] not in failed]
            if done:
                sqs.delete_message_batch(QueueUrl=m["queue_url"], Entries=done)
            self.batches.append((m["function"].name, len(records), len(failed), None))

    def _gather(self, sqs, m):
        """One batch, as Lambda's poller makes it: a long poll for the first messages, then, with a batching
        window, more polls until the batch is full or the window has passed since the first arrived."""
        def receive(n, wait):
            return sqs.receive_message(
                QueueUrl=m["queue_url"], MaxNumberOfMessages=min(n, 10), WaitTimeSeconds=wait,
                AttributeNames=LAMBDA_ATTRIBUTES, MessageAttributeNames=["All"],
            ).get("Messages", [])

        got = receive(m["batch_size"], POLL_WAIT_S)
        closes = time.monotonic() + m["window_s"]
        while got and len(got) < m["batch_size"] and not self.stop_event.is_set():
            left = closes - time.monotonic()
            if left <= 0:
                break
            # short polls a quarter of a second apart: a long poll would return at the first message that lands
            time.sleep(min(left, 0.25))
            got += receive(m["batch_size"] - len(got), 0)
        return got

    def function(self, suffix):
        """The function whose name ends with `suffix` (names are `<stack>-<crate>`)."""
        hits = [f for n, f in self.functions.items() if n.endswith(suffix)]
        if len(hits) != 1:
            raise KeyError(f"{suffix}: {len(hits)} functions match among {sorted(self.functions)}")
        return hits[0]

    def fire(self, suffix, time_iso=None, detail=None):
        """Fires a scheduled function now, as its EventBridge rule would; returns its response."""
        fn = self.function(suffix)
        rules = [s["rule"]["Arn"] for s in self.schedules if s["function"] is fn]
        event = {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": time_iso or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.session.region_name, "resources": rules, "detail": detail or {},
        }
        return fn.invoke(event)

    def stop(self):
        self.stop_event.set()
        # a poller may be inside a 20 s long poll; it is a daemon thread and ends with moto, so wait briefly
        deadline = time.monotonic() + 2
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for f in self.functions.values():
            f.stop()
