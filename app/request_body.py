"""How every endpoint reads its request body: size limit, JSON depth limit, valid Unicode.

The collect endpoint and app.fast_lane parse with the same function (clickstream.schemas
.parse_json); the other endpoints' bodies are parsed by webargs through ``Blueprint`` below.
"""

from __future__ import annotations

from typing import IO

import flask
import flask_smorest
from flask_smorest import abort
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from clickstream.schemas import LONE_SURROGATE_REASON, JsonTooDeep, has_lone_surrogate, parse_json


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, reading JSON with parse_json: bodies nested past MAX_JSON_DEPTH
    are a 400 (the standard library's parser recursed until a RecursionError, a 500), and a
    lone surrogate anywhere is a 422 naming where (storing or hashing it was a 500)."""

    def _raw_load_json(self, req: flask.Request) -> object:
        if not is_json_request(req):
            return core.missing
        # Strict UTF-8 as webargs decodes (a UnicodeDecodeError is its 400).
        text = req.get_data(cache=True).decode("utf-8")
        try:
            value = parse_json(text)
        except JsonTooDeep as err:
            abort(400, message=f"body: {err}")
        where = lone_surrogate_path(value)
        if where is not None:
            errors: object = [LONE_SURROGATE_REASON]
            for part in reversed(where):
                errors = {part: errors}
            abort(
                422,
                message=f"{'.'.join(where) or 'body'}: {LONE_SURROGATE_REASON}",
                errors={"json": errors},
            )
        return value


def lone_surrogate_path(value: object, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """Where the first string (or key) holding a lone surrogate is, or None. Recursion is
    bounded: parse_json has refused anything nested past MAX_JSON_DEPTH."""
    if type(value) is str:
        return path if has_lone_surrogate(value) else None
    if type(value) is dict:
        for key, child in value.items():
            if has_lone_surrogate(key):
                return (*path, key.encode("utf-8", "backslashreplace").decode())
            found = lone_surrogate_path(child, (*path, key))
            if found is not None:
                return found
    elif type(value) is list:
        for index, child in enumerate(value):
            found = lone_surrogate_path(child, (*path, str(index)))
            if found is not None:
                return found
    return None


class Blueprint(flask_smorest.Blueprint):
    """The API's blueprint: ``@blp.arguments`` parses bodies with JsonBodyParser."""

    ARGUMENTS_PARSER = JsonBodyParser()


class _RefusedPastMax(LimitedStream):
    """A body of unknown length (chunked) read up to one byte past the limit: werkzeug's own
    stream stops quietly at the limit, so an oversize body looked cut short ("malformed JSON")."""

    def __init__(self, stream: IO[bytes], max_bytes: int) -> None:
        super().__init__(stream, max_bytes + 1, is_max=True)
        self.max_bytes = max_bytes

    def readinto(self, b: bytearray) -> int | None:  # type: ignore[override]
        read = super().readinto(b)
        if self.tell() > self.max_bytes:
            raise RequestEntityTooLarge()
        return read


class Request(flask.Request):
    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        chunked = self.content_length is None and "wsgi.input_terminated" in self.environ
        if limit is not None and chunked and not self.shallow:
            return _RefusedPastMax(self.environ["wsgi.input"], limit)
        return super().stream
