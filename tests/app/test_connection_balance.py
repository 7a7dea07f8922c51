"""The shedding rule of app.connection_balance, on the hooks' own arguments.

The end-to-end check (a real gunicorn, 40 keep-alive connections) is in tests/system/test_serve.py;
here the rule itself: who sheds, when, and that slots follow the workers' lives.
"""

from __future__ import annotations

from types import SimpleNamespace

from app.connection_balance import ConnectionBalance


class Request:
    """What the hook uses of gunicorn's Request: force_close()."""

    def __init__(self) -> None:
        self.closing = False

    def force_close(self) -> None:
        self.closing = True


def _master_with(balance: ConnectionBalance, n: int) -> list[SimpleNamespace]:
    server = SimpleNamespace(WORKERS={})
    workers = []
    for pid in range(n):
        worker = SimpleNamespace(nr_conns=0)
        balance.assign(server, worker)
        server.WORKERS[pid] = worker
        workers.append(worker)
    return workers


def _request(balance: ConnectionBalance, worker: SimpleNamespace) -> bool:
    req = Request()
    balance.before_request(worker, req)
    return req.closing


def test_only_a_worker_over_its_share_plus_one_sheds():
    balance = ConnectionBalance(slots=8)
    workers = _master_with(balance, 4)
    for worker, conns in zip(workers, (15, 5, 6, 6), strict=True):
        worker.nr_conns = conns
        _request(balance, worker)  # publish
    # 32 connections over 4 workers: a fair share of 8; 15 > 9 sheds, the others keep theirs.
    assert _request(balance, workers[0]) is True
    assert [_request(balance, w) for w in workers[1:]] == [False, False, False]
    # The shed connections reconnected and the kernel hashed them over the others.
    for worker, conns in zip(workers[1:], (7, 8, 8), strict=True):
        worker.nr_conns = conns
        _request(balance, worker)
    workers[0].nr_conns = 9
    assert _request(balance, workers[0]) is False


def test_even_pools_never_shed():
    balance = ConnectionBalance(slots=8)
    workers = _master_with(balance, 4)
    for worker, conns in zip(workers, (9, 8, 8, 7), strict=True):
        worker.nr_conns = conns
    assert not any([_request(balance, w) for w in workers for _ in range(3)])


def test_exited_workers_free_their_slot_and_stop_counting():
    balance = ConnectionBalance(slots=2)
    server = SimpleNamespace(WORKERS={})
    first, second = SimpleNamespace(nr_conns=10), SimpleNamespace(nr_conns=0)
    for pid, worker in enumerate((first, second)):
        balance.assign(server, worker)
        server.WORKERS[pid] = worker
    _request(balance, second)
    assert _request(balance, first) is True  # 10 against a share of 5
    balance.release(server, second)
    del server.WORKERS[1]
    assert _request(balance, first) is False  # alone now: its share is all of them
    third = SimpleNamespace(nr_conns=0)
    balance.assign(server, third)
    assert third.balance_slot == second.balance_slot
    extra = SimpleNamespace(nr_conns=50)
    server.WORKERS[2] = third
    balance.assign(server, extra)  # no slot left: that worker is left alone
    assert extra.balance_slot is None and _request(balance, extra) is False
