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


def store():
    """The Redis client for CLI work (starts or joins the embedded server when needed)."""
    return get_redis(load_settings())
