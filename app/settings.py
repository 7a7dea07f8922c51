"""Settings from the process environment: the one place that reads it.

Entry points (the CLI, ``offerwise serve``'s app factory, the worker and its jobs) call
``load_settings()`` once and hand the ``store.config.Settings`` down; code below ``app/`` never
reads the environment, so a test passes a ``Settings`` instead of setting variables.
"""

from __future__ import annotations

from store.config import Settings


def load_settings() -> Settings:
    return Settings()
