"""What gunicorn refuses itself, over real HTTP against ``offerwise serve``: every refusal is in
the API's JSON error shape (app.errors) and names the limit it enforces."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from app.server import LIMIT_REQUEST_FIELD_SIZE, LIMIT_REQUEST_FIELDS, LIMIT_REQUEST_LINE
from tests.helpers import free_port, wait_until_ok

CLI = str(Path(sys.executable).with_name("offerwise"))


@pytest.fixture(scope="module")
def server(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server,
        "OFFERWISE_DATA_DIR": str(tmp_path_factory.mktemp("var")),
        "OFFERWISE_STAFF_TOKEN": "staff-secret-token",
    }
    proc = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/healthz", proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes and read one answer: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        with contextlib.suppress(OSError):  # the server may answer before reading everything
            conn.sendall(raw)
        data = b""
        # A server closing with unread bytes resets the connection; the answer came first.
        with contextlib.suppress(ConnectionResetError):
            while not _complete(data) and (chunk := conn.recv(65536)):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(sep and length and len(body) >= int(length.group(1)))


def json_refusal(answer: tuple[int, dict[str, str], bytes], status: int) -> str:
    code, headers, body = answer
    assert code == status, body[:300]
    assert headers["content-type"] == "application/json", body[:300]
    payload = orjson.loads(body)
    assert payload["code"] == status and payload["status"] and payload["message"]
    return payload["message"]


def test_a_long_request_line_is_a_json_414_naming_the_limit(server):
    raw = b"GET /healthz?" + b"a" * (LIMIT_REQUEST_LINE + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    message = json_refusal(exchange(server, raw), 414)
    assert f"{LIMIT_REQUEST_LINE} bytes" in message


@pytest.mark.parametrize("shape", ["one large header", "too many headers"])
def test_large_headers_are_a_json_431_naming_the_limits(server, shape):
    if shape == "one large header":
        extra = b"X-Big: " + b"b" * (LIMIT_REQUEST_FIELD_SIZE + 10) + b"\r\n"
    else:
        extra = b"".join(b"X-H%d: 1\r\n" % i for i in range(LIMIT_REQUEST_FIELDS + 5))
    raw = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"
    message = json_refusal(exchange(server, raw), 431)
    assert f"{LIMIT_REQUEST_FIELDS} header fields" in message
    assert f"{LIMIT_REQUEST_FIELD_SIZE} bytes" in message


def test_a_malformed_request_is_a_json_400(server):
    json_refusal(exchange(server, b"NOT HTTP AT ALL\r\n\r\n"), 400)


def test_a_body_over_the_limit_is_a_json_413_naming_it(server):
    body = b'{"visitor": "v1", "events": [' + b" " * (64 * 1024) + b"]}"
    raw = (
        b"POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    message = json_refusal(exchange(server, raw), 413)
    assert message == "body: larger than this endpoint's limit of 65536 bytes"


def test_a_chunked_body_over_the_limit_is_a_json_413_naming_it(server):
    body = b'{"visitor": "v1", "events": [' + b" " * (64 * 1024) + b"]}"
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in (body[i : i + 8192] for i in range(0, len(body), 8192))
    )
    raw = (
        b"POST /v1/collect HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    message = json_refusal(exchange(server, raw), 413)
    assert message == "body: larger than this endpoint's limit of 65536 bytes"


def test_a_deep_body_without_a_key_is_a_json_401(server):
    raw = (
        b"PUT /v1/admin/rules HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000\r\n\r\n" + b"[" * 10_000
    )
    json_refusal(exchange(server, raw), 401)


def test_the_limits_are_documented():
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert f"request line over {LIMIT_REQUEST_LINE} bytes (414)" in readme
    fields, size = LIMIT_REQUEST_FIELDS, LIMIT_REQUEST_FIELD_SIZE
    assert f"more than {fields} header fields or one over {size} bytes (431)" in readme
