"""python3-limits (Debian's 2.8) moving window on RedisStorage: "5/second"
allows 5 hits and refuses the 6th; another identifier has its own window;
get_window_stats counts what is left; a cost larger than what is left is
refused whole; clear() empties the window.

Commands limits 2.8 sends through redis-py 4.3.4 (redis-cli MONITOR against
redis-server 7.0.15):
  PING                                              storage.check()
  EVALSHA acquire-sha 1 key now limit expiry amount each hit(); the first
      gets NOSCRIPT, then SCRIPT LOAD, EVALSHA again. now is a float
      ("1796188263.8242397"). acquire_moving_window.lua runs
      LINDEX key (limit - amount), then unless refused LPUSH key now...
      (amount copies of the Lua number tonumber(now): Redis 7.0 turns a
      Lua number argument into a string with "%.17g", so ".826526" is
      pushed as ".8265259"), LTRIM key 0 limit-1, EXPIRE key expiry;
      returns true (1) or false (nil)
  EVALSHA window-sha 1 key (now - expiry) limit     test(), get_window_stats();
      the first gets NOSCRIPT, SCRIPT LOAD, EVALSHA again.
      moving_window.lua runs LRANGE key 0 limit and returns {oldest, count}
      (oldest, a float in Lua, as an integer reply)
  DEL key                                           clear()
So beyond EVALSHA and SCRIPT LOAD it needs lists inside Lua: LPUSH (several
values), LTRIM, LINDEX, LRANGE, and EXPIRE.
"""
import time

from limits import parse, storage, strategies

from scenario import Scenario


def one_round(t, limiter, item, who):
    """5 hits allowed, the 6th refused, if the round took less than the
    1 s window. Returns False for a round too slow to judge."""
    start = time.time()
    allowed = [limiter.hit(item, who) for _ in range(5)]
    sixth = limiter.hit(item, who)
    test_after = limiter.test(item, who)
    reset, remaining = limiter.get_window_stats(item, who)
    if time.time() - start >= 0.9 and (sixth or test_after):
        return False
    t.check("hits 1..5 of 5/second", allowed, [True] * 5)
    t.check("hit 6 of 5/second", sixth, False)
    t.check("test() after 5 hits", test_after, False)
    t.check("remaining after 5 hits", remaining, 0)
    if not start - 1 <= reset <= time.time() + 2:
        t.fail("reset time %r not within a second or so of now (%r)" % (reset, start))
    return True


def body(t):
    s = storage.RedisStorage("redis://%s:%d" % (t.host, t.port), socket_timeout=5)
    t.check("storage.check()", s.check(), True)
    limiter = strategies.MovingWindowRateLimiter(s)

    per_second = parse("5/second")
    t.check("parsed amount", per_second.amount, 5)
    t.check("parsed expiry", per_second.get_expiry(), 1)
    for attempt in range(3):  # a round slower than the window cannot be judged
        who = "user-%d" % attempt
        if one_round(t, limiter, per_second, who):
            break
    else:
        t.fail("three rounds of 6 hits each took more than the 1 s window")

    # A window of a minute for the rest: nothing here depends on speed.
    per_minute = parse("5/minute")
    t.check("a fresh identifier's test()", limiter.test(per_minute, "alice"), True)
    t.check("window stats, fresh", limiter.get_window_stats(per_minute, "alice")[1], 5)
    t.check("hit 1 (alice)", limiter.hit(per_minute, "alice"), True)
    t.check("hit cost 3 (alice)", limiter.hit(per_minute, "alice", cost=3), True)
    t.check("remaining (alice)", limiter.get_window_stats(per_minute, "alice")[1], 1)
    t.check("hit cost 2 with 1 left (alice)", limiter.hit(per_minute, "alice", cost=2), False)
    t.check("remaining after a refused hit (alice)",
            limiter.get_window_stats(per_minute, "alice")[1], 1)
    t.check("bob's own window", limiter.hit(per_minute, "bob"), True)
    t.check("remaining (bob)", limiter.get_window_stats(per_minute, "bob")[1], 4)
    t.check("hit 5 (alice)", limiter.hit(per_minute, "alice"), True)
    t.check("hit 6 (alice)", limiter.hit(per_minute, "alice"), False)
    limiter.clear(per_minute, "alice")
    t.check("hit after clear() (alice)", limiter.hit(per_minute, "alice"), True)
    t.check("remaining after clear() and a hit", limiter.get_window_stats(per_minute, "alice")[1], 4)


Scenario("py_limits_moving_window").run(body)
