"""Errors of the CRM import: both carry a message a tenant admin can act on."""

from __future__ import annotations


class CrmError(ValueError):
    """A CRM operation refused for a reason the caller can fix (unknown tenant, no version...)."""


class CrmBusy(CrmError):
    """Another import, rollback or erasure holds the tenant's CRM lock; retrying shortly works."""


class CrmNothingToRollBack(CrmError):
    """No live version, or none older than the live one, to roll back to."""


class CrmImportError(CrmError):
    """A file that cannot be imported as a whole; nothing went live.

    ``report`` is the same JSON-able dict a successful import returns, with ``status`` set to
    ``"rejected"`` and ``problem`` naming the reason, so an API can return it as the body.
    """

    def __init__(self, message: str, report: dict | None = None) -> None:
        super().__init__(message)
        self.report = report or {}
