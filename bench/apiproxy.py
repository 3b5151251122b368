"""A counting HTTP proxy in front of moto, so that both tools' AWS API calls are counted the same way.

Each caller gets a port of its own (one per Palisade function, one for Cloud Custodian) and every request is
forwarded unchanged to moto; the proxy only records which operation it was. Operations are named from the request
itself, whatever SDK sent it: the `X-Amz-Target` header (JSON protocols: DynamoDB, SQS), the `Action` form field
(query protocols: EC2, IAM, SNS, STS), or the method and sub-resource of the URL (S3's REST protocol).

Run as a child process (so its work never competes with the caller for the GIL):
    python bench/apiproxy.py MOTO_URL LABEL...
prints one JSON line {"LABEL": port, ...} once listening. `GET /__counts` on any port returns
{"calls": {"LABEL": {"service:Operation": n, ...}, ...}, "seconds": {...the time moto took to answer them...}};
`POST /__reset` clears both.
"""
import collections
import http.client
import json
import re
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# S3 sub-resources (the first query key) and what the operation is called, by method.
S3_SUB = {
    "publicAccessBlock": ("GetPublicAccessBlock", "PutPublicAccessBlock", "DeletePublicAccessBlock"),
    "encryption": ("GetBucketEncryption", "PutBucketEncryption", "DeleteBucketEncryption"),
    "tagging": ("GetBucketTagging", "PutBucketTagging", "DeleteBucketTagging"),
    "policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    "acl": ("GetBucketAcl", "PutBucketAcl", None),
    "replication": ("GetBucketReplication", "PutBucketReplication", "DeleteBucketReplication"),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning", None),
    "website": ("GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"),
    "logging": ("GetBucketLogging", "PutBucketLogging", None),
    "notification": ("GetBucketNotificationConfiguration", "PutBucketNotificationConfiguration", None),
    "lifecycle": ("GetBucketLifecycleConfiguration", "PutBucketLifecycleConfiguration", "DeleteBucketLifecycle"),
    "location": ("GetBucketLocation", None, None),
    "ownershipControls": ("GetBucketOwnershipControls", "PutBucketOwnershipControls", None),
    "cors": ("GetBucketCors", "PutBucketCors", "DeleteBucketCors"),
}
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "expect"}
SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")


def s3_operation(method, path, query):
    parts = [p for p in path.split("/") if p]
    keys = [k for k, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)]
    sub = next((k for k in keys if k in S3_SUB), None)
    if sub:
        get, put, delete = S3_SUB[sub]
        return {"GET": get, "PUT": put, "DELETE": delete}.get(method) or f"{method} ?{sub}"
    if not parts:
        return "ListBuckets"
    if len(parts) == 1:
        if method == "GET":
            return "ListObjectsV2" if "list-type" in keys else "ListObjects"
        return {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket"}.get(method, f"{method} bucket")
    return {"GET": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject", "HEAD": "HeadObject"}.get(method, method)


def operation(method, path, headers, body):
    """`service:Operation` for one request, from the request alone."""
    auth = headers.get("Authorization", "")
    m = SCOPE.search(auth)
    service = m.group(1) if m else "?"
    target = headers.get("X-Amz-Target")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    url = urllib.parse.urlsplit(path)
    if service == "s3":
        return f"s3:{s3_operation(method, url.path, url.query)}"
    form = dict(urllib.parse.parse_qsl(url.query))
    if method == "POST" and body and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        form.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
    if "Action" in form:
        return f"{service}:{form['Action']}"
    return f"{service}:{method} {url.path}"


class Counts:
    """Calls, and seconds spent waiting for moto's answers, per label and operation."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = collections.defaultdict(collections.Counter)
        self.seconds = collections.defaultdict(collections.Counter)

    def add(self, label, op, seconds):
        with self.lock:
            self.calls[label][op] += 1
            self.seconds[label][op] += seconds

    def snapshot(self):
        with self.lock:
            return {"calls": {k: dict(v) for k, v in self.calls.items()},
                    "seconds": {k: dict(v) for k, v in self.seconds.items()}}

    def reset(self):
        with self.lock:
            self.calls.clear()
            self.seconds.clear()


def handler(label, upstream, counts):
    host, port = upstream
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def setup(self):
            super().setup()
            # headers and body leave in one write; without this, Nagle and delayed ACKs add ~40 ms per call
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status, headers, body):
            self.send_response(status)
            length = str(len(body))
            for k, v in headers:
                if k.lower() == "content-length" and self.command == "HEAD":
                    length = v  # a HEAD answer has no body but tells the length of the one GET would have
                elif k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", length)
            self._headers_buffer.append(b"\r\n")
            self.wfile.write(b"".join(self._headers_buffer) + (b"" if self.command == "HEAD" else body))
            self._headers_buffer = []

        def _forward(self):
            body = self._body()
            if self.path.startswith("/__"):
                if self.path == "/__counts":
                    return self._send(200, [("Content-Type", "application/json")], json.dumps(counts.snapshot()).encode())
                if self.path == "/__reset":
                    counts.reset()
                    return self._send(200, [], b"{}")
            op = operation(self.command, self.path, self.headers, body)
            started = time.perf_counter()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            headers["Content-Length"] = str(len(body))
            for attempt in (1, 2):  # a kept-alive connection moto closed meanwhile is reopened once
                conn = getattr(local, "conn", None) or http.client.HTTPConnection(host, port, timeout=300)
                local.conn = conn
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    break
                except (http.client.HTTPException, OSError):
                    conn.close()
                    local.conn = None
                    if attempt == 2:
                        raise
            counts.add(label, op, time.perf_counter() - started)
            self._send(resp.status, resp.getheaders(), data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

    return Handler


def main():
    upstream = urllib.parse.urlsplit(sys.argv[1])
    counts = Counts()
    ports = {}
    for label in sys.argv[2:]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler(label, (upstream.hostname, upstream.port), counts))
        server.daemon_threads = True
        ports[label] = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps(ports), flush=True)
    sys.stdin.read()  # runs until the parent closes our stdin (or dies)


if __name__ == "__main__":
    main()
