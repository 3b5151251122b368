"""A local stand-in for a tenant's underwriting API: an HTTP server on 127.0.0.1 that checks each delivery's
HMAC signature and keeps what it received. It can be told to fail a file's first attempts (5xx) or to refuse it."""
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, secret):
        self.secret = secret.encode()
        self.received = []      # (idempotency key, record, signature ok)
        self.attempts = {}      # idempotency key -> attempts seen
        self.fail_first = {}    # file id -> how many attempts get a 503
        self.refuse = set()     # file ids answered with 422
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key", "")
                want = "sha256=" + hmac.new(rec.secret, body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(want, self.headers.get("X-Palisade-Signature", ""))
                with rec.lock:
                    rec.attempts[key] = rec.attempts.get(key, 0) + 1
                    n = rec.attempts[key]
                    if not ok:
                        code = 401
                    elif key in rec.refuse:
                        code = 422
                    elif n <= rec.fail_first.get(key, 0):
                        code = 503
                    else:
                        code = 201
                        if all(k != key for k, _, _ in rec.received):  # the idempotency key makes repeats harmless
                            rec.received.append((key, json.loads(body), ok))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/quotes"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def records(self):
        with self.lock:
            return list(self.received)

    def stop(self):
        self.server.shutdown()
