'use strict';
// rate-limiter-flexible RateLimiterRedis with an ioredis client and the
// default options: consume() 5 points of 5 allowed (remainingPoints 4..0),
// the 6th rejected with a RateLimiterRes of remainingPoints 0; the expiry it
// reports comes from the key's PTTL; a consume of 2 points counts 2; another
// key has its own count; delete() removes a key's count.
//
// With a duration of 1 s or more (the default path), consume() calls its Lua
// script through ioredis defineCommand ("rlflxIncr"). Commands
// rate-limiter-flexible 11.4.0 sends through ioredis 5.9.2 (redis-cli
// MONITOR against redis-server 7.0.15):
//   at connect: CLIENT SETINFO x2 (refused by 7.0, ignored), INFO
//   DEL                                                  setup
//   EVAL script 1 rlf:user 1 60 5 60                     the first consume()
//   EVALSHA sha 1 rlf:user 1 60 5 60                     every later one
//     inside Lua: SET key 0 EX 60 NX; INCRBY key points; PTTL key; (EXPIRE
//     key 60 only if PTTL is -1); returns {consumed, pttl}
//   GET, TTL                                             the scenario's checks
//   EVALSHA ... rlf:other 2 ..., EVALSHA ... rlf:other 4 ...
//   DEL rlf:user                                         delete()
//   EXISTS, EVALSHA, DEL
// Not used here: get(), block(), penalty() with forceExpire, and a duration
// of 0 go through MULTI ... EXEC (GET + PTTL; SET EX + PTTL; INCRBY + PTTL).
const Redis = require('ioredis');
const { RateLimiterRedis, RateLimiterRes } = require('rate-limiter-flexible');
const { Scenario } = require('./scenario');

new Scenario('rate_limiter_flexible').run(async (t) => {
  const r = new Redis({ host: t.host, port: t.port, maxRetriesPerRequest: 1, connectTimeout: 5000, commandTimeout: 5000 });
  try {
    t.step = 'setup';
    await r.del('rlf:user', 'rlf:other');
    const limiter = new RateLimiterRedis({ storeClient: r, points: 5, duration: 60, keyPrefix: 'rlf' });

    t.step = 'consume 5';
    for (let i = 1; i <= 5; i++) {
      const res = await limiter.consume('user');
      t.check(`consume ${i}: class`, res instanceof RateLimiterRes, true);
      t.check(`consume ${i}: consumedPoints`, res.consumedPoints, i);
      t.check(`consume ${i}: remainingPoints`, res.remainingPoints, 5 - i);
      t.check(`consume ${i}: isFirstInDuration`, res.isFirstInDuration, i === 1);
      if (!(res.msBeforeNext > 0 && res.msBeforeNext <= 60000)) {
        t.fail(`consume ${i}: msBeforeNext ${res.msBeforeNext}, expected (0, 60000]`);
      }
    }
    t.check('the counter key', await r.get('rlf:user'), '5');
    const ttl = await r.ttl('rlf:user');
    if (!(ttl > 0 && ttl <= 60)) t.fail(`TTL of the counter key: ${ttl}, expected (0, 60]`);

    t.step = 'consume 6';
    try {
      const res = await limiter.consume('user');
      t.fail(`consume 6 was allowed: ${JSON.stringify(res)}`);
    } catch (e) {
      if (!(e instanceof RateLimiterRes)) throw e;  // a Redis error, not a refusal
      t.check('consume 6: remainingPoints', e.remainingPoints, 0);
      t.check('consume 6: consumedPoints', e.consumedPoints, 6);
      if (!(e.msBeforeNext > 0 && e.msBeforeNext <= 60000)) {
        t.fail(`consume 6: msBeforeNext ${e.msBeforeNext}, expected (0, 60000]`);
      }
    }

    t.step = 'another key';
    const two = await limiter.consume('other', 2);
    t.check('consume 2 points (other): consumedPoints', two.consumedPoints, 2);
    t.check('consume 2 points (other): remainingPoints', two.remainingPoints, 3);
    try {
      await limiter.consume('other', 4);
      t.fail('consume of 4 points with 3 left was allowed');
    } catch (e) {
      if (!(e instanceof RateLimiterRes)) throw e;
      t.check('consume 4 with 3 left: remainingPoints', e.remainingPoints, 0);
      t.check('consume 4 with 3 left: consumedPoints', e.consumedPoints, 6);
    }

    t.step = 'delete';
    t.check('delete()', await limiter.delete('user'), true);
    t.check('the counter key after delete()', await r.exists('rlf:user'), 0);
    const fresh = await limiter.consume('user');
    t.check('consume after delete(): remainingPoints', fresh.remainingPoints, 4);
    await r.del('rlf:user', 'rlf:other');
  } finally {
    r.disconnect();
  }
});
