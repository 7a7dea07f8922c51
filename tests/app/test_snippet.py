"""The snippet's build as the service serves it, and its unit tests (node's test runner over
js-snippet/test) as part of the suite."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess

import pytest

from app import pages
from app.pages import SnippetMissing

SNIPPET_DIR = pages.REPO_ROOT / "js-snippet"
MAX_GZIP_BYTES = 6 * 1024


def test_node_unit_tests_pass():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (make system-deps installs it)")
    run = subprocess.run(
        [node, "--test", "test/"], cwd=SNIPPET_DIR, capture_output=True, text=True, timeout=300
    )
    report = run.stdout[-6000:] + run.stderr[-3000:]
    assert run.returncode == 0, report
    passed = re.search(r"^# pass (\d+)$", run.stdout, re.M)
    failed = re.search(r"^# fail (\d+)$", run.stdout, re.M)
    assert passed and int(passed.group(1)) > 0 and failed and failed.group(1) == "0", report


def test_served_snippet_is_the_build_and_small(client):
    built = pages.SNIPPET.read_bytes()
    response = client.get("/v1/snippet.js")
    assert response.status_code == 200
    assert response.mimetype == "application/javascript"
    assert response.data == built
    assert len(gzip.compress(built, 9)) <= MAX_GZIP_BYTES
    assert b"document.cookie" not in built


def test_a_missing_build_stops_the_service_at_start(settings, monkeypatch, tmp_path):
    from app import create_app

    monkeypatch.setattr(pages, "SNIPPET", tmp_path / "offerwise.min.js")
    pages._snippet.cache_clear()
    try:
        with pytest.raises(SnippetMissing, match="make snippet"):
            create_app(settings)
    finally:
        pages._snippet.cache_clear()
