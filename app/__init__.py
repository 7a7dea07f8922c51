"""Offerwise web application.

This module stays import-light on purpose: ``offerwise serve`` imports CLI modules in the
gunicorn master before it sets ``PROMETHEUS_MULTIPROC_DIR``, and prometheus-client fixes its
storage mode when first imported, so the metrics stack must load only inside the workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from store.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from app.factory import create_app as build

    return build(settings)
