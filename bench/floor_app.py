"""The framework floor: the smallest Flask app worth measuring.

One route returning a small JSON object, served by the very gunicorn configuration the real
service uses (``app.server.gunicorn_options``). Its requests/s is what Flask + gunicorn can do on
this machine with no application work at all, so the real endpoints are judged as a fraction of
it rather than against an absolute number that depends on the hardware.
"""

from __future__ import annotations

from flask import Flask

FLOOR_PATH = "/floor"


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get(FLOOR_PATH)
    def floor() -> dict:
        # A dict goes through Flask's JSON provider, as the real endpoints' responses do.
        return {"status": "ok"}

    return app
