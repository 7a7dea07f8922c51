"""HTTP API blueprints. Each module exposes ``blp``; the app factory registers them all."""

from __future__ import annotations

import importlib
import pkgutil

from flask_smorest import Blueprint


def blueprints() -> list[Blueprint]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        blp = getattr(module, "blp", None)
        if isinstance(blp, Blueprint):
            found.append(blp)
    return found
