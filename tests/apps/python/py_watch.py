"""redis-py pipeline() with WATCH: an optimistic-lock retry loop. The first
attempt is spoiled by a second client that changes the watched key between
WATCH and EXEC (EXEC answers a null array, redis-py raises WatchError); the
retry succeeds. A change to a key that is not watched does not abort; UNWATCH
(pipe.reset) forgets the watch.

Commands redis-py 4.3.4 sends (redis-cli MONITOR against redis-server
7.0.15), on the pipeline's connection unless marked "other":
  SET, SET                                         setup
  WATCH k, GET k (immediate mode), other: SET k, MULTI, SET k, EXEC
      EXEC answers a null array (*-1), redis-py raises WatchError; MONITOR
      does not show the SET queued in the aborted transaction
  WATCH k, GET k, MULTI, SET k, EXEC               the retry, committed
  GET
  WATCH k, GET k, other: INCRBY unrelated 1, MULTI, SET k, EXEC   committed
  GET
  WATCH k, SET k (the same connection), MULTI, SET k, EXEC        aborted
  GET
  WATCH k, UNWATCH, other: SET k, MULTI, INCRBY k 1, EXEC         committed
  DEL
redis-py sends no UNWATCH after EXEC (EXEC forgets the watches itself) and
none at the end of `with` here; only pipe.unwatch() sends it.
"""
import redis

from scenario import Scenario


def transfer(t, r, other, key, spoil):
    """Adds 1 to key with WATCH/MULTI/EXEC; spoil(attempt) runs between
    WATCH and EXEC. Returns (attempts, WatchErrors seen)."""
    attempts = 0
    conflicts = 0
    with r.pipeline() as pipe:
        while attempts < 5:
            attempts += 1
            try:
                pipe.watch(key)
                value = int(pipe.get(key))  # immediate mode: the reply comes now
                spoil(attempts)
                pipe.multi()
                pipe.set(key, value + 1)
                replies = pipe.execute()
                t.check("EXEC replies (attempt %d)" % attempts, replies, [True])
                return attempts, conflicts
            except redis.WatchError:
                conflicts += 1
    t.fail("no attempt of 5 succeeded on %s" % key)
    return attempts, conflicts


def body(t):
    r = redis.Redis(host=t.host, port=t.port, socket_timeout=5)
    # A second client with its own connection (another worker, perhaps).
    other = redis.Redis(host=t.host, port=t.port, socket_timeout=5)
    r.set("watch:k", "10")
    r.set("watch:unrelated", "0")

    # The first attempt: the other client writes the watched key.
    def spoil_first(attempt):
        if attempt == 1:
            t.check("other SET", other.set("watch:k", "100"), True)

    attempts, conflicts = transfer(t, r, other, "watch:k", spoil_first)
    t.check("attempts", attempts, 2)
    t.check("WatchErrors", conflicts, 1)
    t.check("watch:k after the retry", r.get("watch:k"), b"101")

    # A write to another key does not abort the transaction.
    def spoil_unrelated(attempt):
        other.incr("watch:unrelated")

    attempts, conflicts = transfer(t, r, other, "watch:k", spoil_unrelated)
    t.check("attempts with an unrelated write", attempts, 1)
    t.check("WatchErrors with an unrelated write", conflicts, 0)
    t.check("watch:k", r.get("watch:k"), b"102")

    # The watching client's own write between WATCH and EXEC also aborts
    # (Redis: a key touched by anyone, this connection included).
    with r.pipeline() as pipe:
        pipe.watch("watch:k")
        pipe.set("watch:k", "200")  # immediate mode, same connection
        pipe.multi()
        pipe.set("watch:k", "300")
        try:
            pipe.execute()
            t.fail("EXEC after the connection's own write to a watched key did not raise WatchError")
        except redis.WatchError:
            pass
    t.check("watch:k after the aborted EXEC", r.get("watch:k"), b"200")

    # After UNWATCH (reset), a change no longer aborts.
    with r.pipeline() as pipe:
        pipe.watch("watch:k")
        pipe.unwatch()
        other.set("watch:k", "7")
        pipe.multi()
        pipe.incr("watch:k")
        t.check("EXEC after UNWATCH", pipe.execute(), [8])
    r.delete("watch:k", "watch:unrelated")


Scenario("py_watch").run(body)
