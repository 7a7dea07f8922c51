"""Helpers shared by CLI commands: JSON output and clean failures."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
import orjson

from app.settings import load_settings
from store.redis_client import get_redis


def emit(payload: object) -> None:
    click.echo(
        orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode()
    )


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


# An import that went through but left rows out: distinct from 1 (file refused, nothing
# imported) and 2 (usage error), so a script can tell a partial import from a failed one.
ROWS_REJECTED_EXIT = 3


def exit_if_rows_rejected(rejected: int) -> None:
    """After the report is printed: exit ``ROWS_REJECTED_EXIT`` when any row was rejected."""
    if rejected:
        click.echo(
            f"warning: {rejected} row(s) rejected, see the report's errors "
            f"(exit code {ROWS_REJECTED_EXIT})",
            err=True,
        )
        sys.exit(ROWS_REJECTED_EXIT)


def store():
    """The Redis client for CLI work (starts or joins the embedded server when needed)."""
    return get_redis(load_settings())
