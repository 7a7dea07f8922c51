"""The app's ensure_sync memo: same answers as Flask's, and no growth per request."""

from __future__ import annotations

from app.factory import OfferwiseFlask


def test_memo_agrees_with_flask_and_does_not_grow_per_request(app, client, acme):
    def plain() -> None:
        return None

    async def coro() -> None:
        return None

    assert app.ensure_sync(plain) is plain
    assert isinstance(app, OfferwiseFlask)
    assert app._is_async.get(coro) is None  # not asked yet
    try:
        wrapped = app.ensure_sync(coro)
    except RuntimeError:  # Flask's own answer without the async extra installed
        wrapped = None
    assert app._is_async[coro] is True and wrapped is not coro
    for _ in range(3):
        client.get(f"/v1/recommend?site={acme['site_key']}&visitor=v1&n=2")
    size = len(app._is_async)
    for _ in range(20):
        assert (
            client.get(f"/v1/recommend?site={acme['site_key']}&visitor=v1&n=2").status_code == 200
        )
    assert len(app._is_async) == size  # MethodView's per-request bound methods share one entry
