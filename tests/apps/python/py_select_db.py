"""redis-py with db=1: the client sends SELECT 1 on each new connection.
Writes in db 1 are not seen in db 0 and the other way round, a second db=1
client (another connection, perhaps another worker) sees db 1's keys, a
pipeline runs in the connection's db, and FLUSHDB on db 1 leaves db 0.

Commands redis-py 4.3.4 sends (redis-cli MONITOR against redis-server
7.0.15, which shows each command with the db it ran in):
  db=0 clients send no SELECT; a db=1 client sends SELECT 1 first on each
  new connection (two here: r1 and r1b), then
  FLUSHDB (db 0, db 1), SET, GET, EXISTS, SET, GET, GET,
  MSET, INCRBY a 1 (redis-py's incr()), MGET (db 0, db 1), DBSIZE (both),
  SET, GET (a pipeline with transaction=False: no MULTI), GET,
  SELECT 1, GET, SELECT 0, GET, SELECT 16 (refused: "DB index is out of
  range" with the default databases 16), FLUSHDB (db 1), DBSIZE, GET, GET,
  DBSIZE, SET (db 1), FLUSHDB (db 0), GET (db 1), FLUSHDB (db 1)
"""
import redis

from scenario import Scenario


def body(t):
    r0 = redis.Redis(host=t.host, port=t.port, db=0, socket_timeout=5)
    r1 = redis.Redis(host=t.host, port=t.port, db=1, socket_timeout=5)
    r1b = redis.Redis(host=t.host, port=t.port, db=1, socket_timeout=5)
    r0.flushdb()
    r1.flushdb()

    t.check("SET in db 1", r1.set("db:k", "one"), True)
    t.check("GET in db 0 of db 1's key", r0.get("db:k"), None)
    t.check("EXISTS in db 0 of db 1's key", r0.exists("db:k"), 0)
    t.check("SET in db 0", r0.set("db:k", "zero"), True)
    t.check("GET in db 1 after db 0's SET", r1.get("db:k"), b"one")
    t.check("GET in db 0", r0.get("db:k"), b"zero")
    t.check("GET from a second db=1 client", r1b.get("db:k"), b"one")

    t.check("MSET in db 1", r1.mset({"db:a": "1", "db:b": "2"}), True)
    t.check("INCR in db 1", r1b.incr("db:a"), 2)
    t.check("MGET in db 0", r0.mget("db:a", "db:b", "db:k"), [None, None, b"zero"])
    t.check("MGET in db 1", r1.mget("db:a", "db:b", "db:k"), [b"2", b"2", b"one"])
    t.check("DBSIZE of db 0", r0.dbsize(), 1)
    t.check("DBSIZE of db 1", r1.dbsize(), 3)

    with r1.pipeline(transaction=False) as p:
        p.set("db:p", "piped")
        p.get("db:p")
        t.check("pipeline in db 1", p.execute(), [True, b"piped"])
    t.check("db 1's pipelined key in db 0", r0.get("db:p"), None)

    # SELECT on a connection of its own: db 1's keys, back in db 0 its own.
    c = redis.Redis(host=t.host, port=t.port, socket_timeout=5, single_connection_client=True)
    t.check("SELECT 1", c.execute_command("SELECT", "1"), True)
    t.check("GET after SELECT 1", c.get("db:k"), b"one")
    t.check("SELECT 0", c.execute_command("SELECT", "0"), True)
    t.check("GET after SELECT 0", c.get("db:k"), b"zero")
    try:
        c.execute_command("SELECT", "16")
        t.fail("SELECT 16 (databases is 16) did not fail")
    except redis.exceptions.ResponseError as e:
        t.check("SELECT 16's error", str(e), "DB index is out of range")
    c.close()

    t.check("FLUSHDB on db 1", r1.flushdb(), True)
    t.check("DBSIZE of db 1 after FLUSHDB", r1.dbsize(), 0)
    t.check("db 1's key after FLUSHDB", r1b.get("db:k"), None)
    t.check("db 0's key after db 1's FLUSHDB", r0.get("db:k"), b"zero")
    t.check("DBSIZE of db 0 after db 1's FLUSHDB", r0.dbsize(), 1)

    # And the other way round.
    r1.set("db:k", "one again")
    t.check("FLUSHDB on db 0", r0.flushdb(), True)
    t.check("db 1's key after db 0's FLUSHDB", r1.get("db:k"), b"one again")
    r1.flushdb()


Scenario("py_select_db").run(body)
