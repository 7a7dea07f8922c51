"""HotScript: the hot paths' script call gives redis-py's answers and survives what redis-py does."""

from __future__ import annotations

import os
import threading

import pytest
import redis

from store.hot_script import HotScript

ECHO = "return {#KEYS, KEYS[1], ARGV[1], ARGV[2], ARGV[3], redis.call('INCR', KEYS[1])}"


def test_same_reply_as_redis_py(r: redis.Redis) -> None:
    hot = HotScript(r, ECHO)
    plain = r.register_script(ECHO)
    args = [12, 1732870000.1234567, b"\x00bytes\xff"]
    # One hash tag: on a cluster a script's keys must share a slot.
    got = hot(["{hs}:k1", "{hs}:k2"], args)
    want = plain(keys=["{hs}:k1", "{hs}:k2"], args=args)
    assert got[:5] == want[:5] == [2, b"{hs}:k1", b"12", b"1732870000.1234567", b"\x00bytes\xff"]
    assert (got[5], want[5]) == (1, 2)  # both really ran on the server, in order


def test_script_errors_are_raised(r: redis.Redis) -> None:
    hot = HotScript(r, "return redis.error_reply('ERR nope')")
    with pytest.raises(redis.ResponseError, match="nope"):
        hot([], [])
    # The connection is still usable after an error reply.
    assert HotScript(r, "return 7")([], []) == 7


def test_reloads_after_script_flush(r: redis.Redis) -> None:
    hot = HotScript(r, "return ARGV[1]")
    assert hot([], ["a"]) == b"a"
    r.script_flush()  # what a restarted server without persistence looks like
    assert hot([], ["b"]) == b"b"
    assert hot([], ["c"]) == b"c"


def test_reconnects_after_the_server_drops_it(r: redis.Redis) -> None:
    hot = HotScript(r, "return ARGV[1]")
    assert hot([], ["a"]) == b"a"
    r.client_kill_filter(_type="normal", skipme=True)
    assert hot([], ["b"]) == b"b"
    assert hot([], ["c"]) == b"c"


def test_one_connection_per_thread_and_replies_never_cross(r: redis.Redis) -> None:
    hot = HotScript(r, "return ARGV[1]")
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(300):
            want = f"{n}-{i}".encode()
            got = hot([], [want])
            if got != want:
                errors.append(f"thread {n} sent {want!r} got {got!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.single_redis  # looks at the one server's connection
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_connection(r: redis.Redis) -> None:
    hot = HotScript(r, "return ARGV[1]")
    assert hot([], ["parent"]) == b"parent"
    parent_conn = hot._connection()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: as a gunicorn worker after the master loaded the app
        try:
            ok = hot([], ["child"]) == b"child" and hot._connection() is not parent_conn
            os.write(write_fd, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    assert os.read(read_fd, 1) == b"1"
    # The parent's connection was not disturbed by the child.
    assert hot([], ["parent again"]) == b"parent again"
