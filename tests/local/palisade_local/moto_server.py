"""A moto server of our own on 127.0.0.1 and a free port; nothing outside this machine is contacted."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

REGION = "eu-west-1"
ACCOUNT = "123456789012"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """Runs `moto_server` as a child process so its work never competes with the test process for the GIL."""

    def __init__(self, port=None, log_path=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "false"},
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not answer within 30 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def env(self):
        """The variables a client (boto3 here, the SDK in the binaries) needs to talk to this moto."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
