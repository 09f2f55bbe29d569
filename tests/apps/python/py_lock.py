"""redis-py Lock: acquire, a second Lock's blocking acquire that times out,
extend (added to the TTL, then replacing it), reacquire, release by a
non-owner refused by the script, release, then the second Lock gets it.

Commands redis-py 4.3.4 sends (redis-cli MONITOR against redis-server
7.0.15); "first" and "second" are two connections:
  DEL                                   setup
  first:  SET lock:res token PX 10000 NX, GET, GET, PTTL
  second: SET ... PX 10000 NX (refused: nil), then the blocking acquire
          repeats it every 0.1 s until its blocking_timeout; GET (owned)
  second: EVALSHA release-sha 1 lock:res token -> NOSCRIPT, SCRIPT LOAD,
          EVALSHA again -> 0 (Lua: GET)
  first:  GET, EVALSHA extend-sha 1 lock:res token 5000 0 -> NOSCRIPT,
          SCRIPT LOAD, EVALSHA -> 1 (Lua: GET, PTTL, PEXPIRE), PTTL;
          EVALSHA extend-sha ... 3000 1 (Lua: GET, PTTL, PEXPIRE), PTTL;
          EVALSHA reacquire-sha 1 lock:res token 10000 -> NOSCRIPT,
          SCRIPT LOAD, EVALSHA (Lua: GET, PEXPIRE), PTTL
  second: EVALSHA extend-sha ... -> 0 (Lua: GET)
  first:  EVALSHA release-sha 1 lock:res token -> 1 (Lua: GET, DEL), GET, GET
  second: SET ... PX 10000 NX (granted), GET
  first:  GET
  second: EVALSHA release-sha (Lua: GET, DEL)
  first:  EXISTS
SCRIPT LOAD's sha must be the one redis-py computes (SHA1 of the text); a
script returns 0/1 as an integer reply.
"""
import redis
from redis.exceptions import LockNotOwnedError

from scenario import Scenario


def body(t):
    r = redis.Redis(host=t.host, port=t.port, socket_timeout=5)
    other = redis.Redis(host=t.host, port=t.port, socket_timeout=5)
    r.delete("lock:res")

    first = r.lock("lock:res", timeout=10)
    t.check("first acquire", first.acquire(blocking=False), True)
    t.check("locked()", first.locked(), True)
    t.check("owned() by the first", first.owned(), True)
    ttl = r.pttl("lock:res")
    if not 0 < ttl <= 10000:
        t.fail("PTTL after acquire: %d, expected (0, 10000]" % ttl)

    second = other.lock("lock:res", timeout=10)
    t.check("second, non-blocking acquire", second.acquire(blocking=False), False)
    t.check("second, blocking acquire with blocking_timeout=0.3",
            second.acquire(blocking=True, blocking_timeout=0.3), False)
    t.check("owned() by the second", second.owned(), False)

    # A release with another token: the release script returns 0.
    second.local.token = b"not-the-owner"
    try:
        second.release()
        t.fail("release by a non-owner did not raise LockNotOwnedError")
    except LockNotOwnedError:
        pass
    second.local.token = None
    t.check("owned() by the first after the refused release", first.owned(), True)

    # extend adds to the remaining TTL...
    t.check("extend(5)", first.extend(5), True)
    ttl = r.pttl("lock:res")
    if not 10000 < ttl <= 15000:
        t.fail("PTTL after extend(5): %d, expected (10000, 15000]" % ttl)
    # ...or replaces it.
    t.check("extend(3, replace_ttl=True)", first.extend(3, replace_ttl=True), True)
    ttl = r.pttl("lock:res")
    if not 0 < ttl <= 3000:
        t.fail("PTTL after extend(3, replace_ttl=True): %d, expected (0, 3000]" % ttl)
    t.check("reacquire()", first.reacquire(), True)
    ttl = r.pttl("lock:res")
    if not 3000 < ttl <= 10000:
        t.fail("PTTL after reacquire: %d, expected (3000, 10000]" % ttl)

    # Extending a lock someone else holds fails in the script.
    second.local.token = b"not-the-owner"
    try:
        second.extend(5)
        t.fail("extend by a non-owner did not raise LockNotOwnedError")
    except LockNotOwnedError:
        pass
    second.local.token = None

    first.release()
    t.check("locked() after release", first.locked(), False)
    t.check("lock:res after release", r.get("lock:res"), None)
    t.check("second acquire after release", second.acquire(blocking=True, blocking_timeout=1), True)
    t.check("owned() by the second", second.owned(), True)
    t.check("owned() by the first", first.owned(), False)
    second.release()
    t.check("lock:res at the end", r.exists("lock:res"), 0)


Scenario("py_lock").run(body)
