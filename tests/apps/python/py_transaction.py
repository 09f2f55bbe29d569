"""redis-py pipeline(transaction=True): the commands queued, then EXEC's
replies as one list, each parsed by its command's callback; a command that
fails inside EXEC raises after the others ran.

Commands redis-py 4.3.4 sends (redis-cli MONITOR against redis-server
7.0.15; MONITOR shows the queued commands when EXEC runs them):
  DEL, SET                                          setup
  MULTI, SET, INCRBY n 1 (redis-py's incr() is INCRBY), INCRBY, GET, DEL,
  EXISTS, EXPIRE, TTL, MGET, EXEC                   the first pipeline
  GET, GET, SET                                     checks outside
  MULTI, SET, INCRBY (on a string: fails inside EXEC), GET, EXEC
  GET
  MULTI, GET, EXEC                                  one command is still wrapped
  DEL
Nothing at connect (no HELLO, no CLIENT SETINFO, no SELECT for db 0).
"""
import redis

from scenario import Scenario


def body(t):
    r = redis.Redis(host=t.host, port=t.port, socket_timeout=5)
    r.delete("tx:a", "tx:n", "tx:gone", "tx:s")
    r.set("tx:gone", "x")

    with r.pipeline(transaction=True) as p:
        p.set("tx:a", "1")
        p.incr("tx:n")
        p.incrby("tx:n", 41)
        p.get("tx:a")
        p.delete("tx:gone")
        p.exists("tx:gone")
        p.expire("tx:a", 100)
        p.ttl("tx:a")
        p.mget("tx:a", "tx:n", "tx:missing")
        replies = p.execute()
    t.check("EXEC replies", replies,
            [True, 1, 42, b"1", 1, 0, True, 100, [b"1", b"42", None]])
    t.check("tx:n after EXEC", r.get("tx:n"), b"42")
    t.check("tx:gone after EXEC", r.get("tx:gone"), None)

    # An error inside EXEC: Redis runs the other commands; redis-py raises
    # the first error after parsing all replies (raise_on_error=True), or
    # returns it in place with raise_on_error=False.
    r.set("tx:s", "not a number")
    with r.pipeline(transaction=True) as p:
        p.set("tx:a", "2")
        p.incr("tx:s")
        p.get("tx:a")
        replies = p.execute(raise_on_error=False)
    t.check("replies[0] (SET)", replies[0], True)
    if not isinstance(replies[1], redis.exceptions.ResponseError):
        t.fail("replies[1] (INCR of a string): got %r, expected a ResponseError" % (replies[1],))
    elif "not an integer" not in str(replies[1]):
        t.fail("replies[1] (INCR of a string): error %r lacks 'not an integer'" % str(replies[1]))
    t.check("replies[2] (GET after the failed INCR)", replies[2], b"2")
    t.check("tx:a after the EXEC with an error", r.get("tx:a"), b"2")

    with r.pipeline(transaction=True) as p:
        p.get("tx:a")
        t.check("single-command transaction", p.execute(), [b"2"])
    r.delete("tx:a", "tx:n", "tx:s")


Scenario("py_transaction").run(body)
