"""redis-py register_script: scripts called with KEYS and ARGV whose replies
have every type Lua can return: integer, bulk, nested array, status, nil,
and an error raised as ResponseError; Lua numbers truncated to integers,
an array cut at its first nil, redis.call's errors raised, redis.pcall's
returned as a table.

Commands redis-py 4.3.4 sends (redis-cli MONITOR against redis-server
7.0.15):
  DEL, SCRIPT FLUSH                           setup
  EVALSHA sha numkeys key... arg...           every call; the first call of
      each script gets NOSCRIPT, then SCRIPT LOAD script, then the same
      EVALSHA again; later calls of it send EVALSHA only
  SCRIPT EXISTS sha                           after the first script
  GET                                         a check outside
  SCRIPT EXISTS sha sha sha 000...0           at the end
  DEL
Inside Lua (MONITOR's "[0 lua]" lines): INCRBY, SET, GET, INCR (on a string:
the error of redis.call, then of redis.pcall).
"""
import redis
from redis.exceptions import ResponseError

from scenario import Scenario


def body(t):
    r = redis.Redis(host=t.host, port=t.port, socket_timeout=5)
    r.delete("sc:n", "sc:s")
    t.check("SCRIPT FLUSH", r.script_flush(), True)

    incr = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    t.check("integer, first call (NOSCRIPT, SCRIPT LOAD, EVALSHA)", incr(keys=["sc:n"], args=[5]), 5)
    t.check("integer, second call (EVALSHA)", incr(keys=["sc:n"], args=[-2]), 3)
    t.check("SCRIPT EXISTS after the first call", r.script_exists(incr.sha), [True])

    bulk = r.register_script(
        "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1]) .. ARGV[2]")
    t.check("bulk", bulk(keys=["sc:s"], args=["caf\u00e9 ", b"\x00\xff"]),
            "caf\u00e9 ".encode() + b"\x00\xff")
    t.check("sc:s written by the script", r.get("sc:s"), "caf\u00e9 ".encode())

    nested = r.register_script(
        "return {1, 'two', {3, {'four', KEYS[1]}}, ARGV[1], {}, tonumber(ARGV[2])}")
    t.check("nested array", nested(keys=["sc:k"], args=["a", "-7"]),
            [1, b"two", [3, [b"four", b"sc:k"]], b"a", [], -7])

    status = r.register_script("return redis.status_reply('FINE')")
    t.check("status", status(), b"FINE")
    status_table = r.register_script("return {ok = 'ALSO FINE'}")
    t.check("status as {ok=...}", status_table(), b"ALSO FINE")

    misc = r.register_script(
        "if ARGV[1] == 'nil' then return nil end "
        "if ARGV[1] == 'false' then return false end "
        "if ARGV[1] == 'true' then return true end "
        "if ARGV[1] == 'float' then return 3.99 end "
        "if ARGV[1] == 'hole' then return {1, 2, nil, 4} end "
        "if ARGV[1] == 'nkeys' then return #KEYS * 10 + #ARGV end")
    t.check("nil", misc(args=["nil"]), None)
    t.check("false is nil", misc(args=["false"]), None)
    t.check("true is 1", misc(args=["true"]), 1)
    t.check("3.99 is 3", misc(args=["float"]), 3)
    t.check("an array ends at its first nil", misc(args=["hole"]), [1, 2])
    t.check("#KEYS and #ARGV", misc(keys=["a", "b", "c"], args=["nkeys", "x"]), 32)

    err = r.register_script("return redis.error_reply('MYERR custom failure')")
    try:
        err()
        t.fail("error_reply: no ResponseError raised")
    except ResponseError as e:
        t.check("error_reply's message", str(e), "MYERR custom failure")

    err_table = r.register_script("return {err = 'TABLEERR from a table'}")
    try:
        err_table()
        t.fail("{err=...}: no ResponseError raised")
    except ResponseError as e:
        t.check("{err=...}'s message", str(e), "TABLEERR from a table")

    # redis.call raises the command's error out of the script.
    call_err = r.register_script("return redis.call('INCR', KEYS[1])")
    try:
        call_err(keys=["sc:s"])
        t.fail("redis.call of INCR on a string: no ResponseError raised")
    except ResponseError as e:
        if "not an integer" not in str(e):
            t.fail("redis.call's error %r lacks 'not an integer'" % str(e))
    # redis.pcall returns it as a table the script can look into.
    pcall = r.register_script(
        "local e = redis.pcall('INCR', KEYS[1]) "
        "if type(e) == 'table' and e.err then return 'caught: ' .. e.err end "
        "return 'not caught'")
    got = pcall(keys=["sc:s"])
    if not (isinstance(got, bytes) and got.startswith(b"caught: ") and b"not an integer" in got):
        t.fail("redis.pcall: got %r, expected b'caught: ...not an integer...'" % (got,))

    t.check("SCRIPT EXISTS of all, and an unknown sha",
            r.script_exists(incr.sha, bulk.sha, nested.sha, "0" * 40),
            [True, True, True, False])
    r.delete("sc:n", "sc:s")


Scenario("py_script").run(body)
