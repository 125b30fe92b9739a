"""A real S3-compatible server on the loopback for the object-store tests: moto's server mode,
in a subprocess the tests start and stop themselves. Clients reach it through the same
environment variables a user sets for any S3 endpoint."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str

    @classmethod
    def start(cls) -> S3Server:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(process, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=2)
                return server
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)

    def env(self) -> dict[str, str]:
        """What a user would export to use this endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "proteus-test",
            "AWS_SECRET_ACCESS_KEY": "proteus-test",
            "AWS_REGION": "us-east-1",
        }

    def create_bucket(self, name: str) -> None:
        # moto accepts an unsigned CreateBucket; the code under test never creates buckets.
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        urllib.request.urlopen(request, timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def copy_prefix(url: str, to: str) -> None:
    """Every object under ``url`` put again under ``to`` (a cache the test may damage)."""
    from proteus.common.storage.objectstore import ObjectStore

    src, dst = ObjectStore(url), ObjectStore(to)
    for key in src.list():
        dst.put(key, src.get(key))
