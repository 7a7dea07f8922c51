"""A local S3-compatible server for the object-store tests: moto in server mode, started by the
test session on a free loopback port, never a fake client.

``s3_server`` (session) yields its endpoint URL; ``s3_url`` gives each test a fresh bucket and
sets the standard AWS variables (dummy credentials, a region, no instance-metadata lookups) so
that pyarrow's S3 client in this process and in the processes a test starts finds them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.helpers import free_port

REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "offerwise-test",
    "AWS_SECRET_ACCESS_KEY": "offerwise-test-secret",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # The AWS SDK would otherwise ask an instance-metadata address for credentials or region.
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _wait_listening(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **AWS_ENV},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_listening(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=name)


@pytest.fixture
def s3_url(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/offerwise`` on the session's server, AWS variables set."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    bucket = f"ow-{secrets.token_hex(6)}"
    make_bucket(s3_server, bucket)
    return f"s3://{bucket}/offerwise"
