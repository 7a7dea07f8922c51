"""HTTP API blueprints. Each module exposes ``blp``; the app factory registers them all."""

from __future__ import annotations

import importlib
import pkgutil

import flask_smorest

from app.request_body import Blueprint


def blueprints() -> list[Blueprint]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        blp = getattr(module, "blp", None)
        if isinstance(blp, Blueprint):
            found.append(blp)
        elif isinstance(blp, flask_smorest.Blueprint):
            # flask-smorest's own would parse bodies with webargs' parser: no depth limit.
            raise TypeError(f"{module.__name__}.blp must be an app.request_body.Blueprint")
    return found
