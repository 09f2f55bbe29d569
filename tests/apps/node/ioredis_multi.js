'use strict';
// ioredis multi(): queued commands, exec()'s results as [err, result] pairs;
// a command failing inside EXEC gives its pair an error and the others still
// run; a command rejected when queued (wrong arity) makes EXEC fail whole
// with EXECABORT; discard().
//
// Commands ioredis 5.9.2 sends (redis-cli MONITOR against redis-server
// 7.0.15; MONITOR shows queued commands when EXEC runs them, and no command
// that failed):
//   at connect: CLIENT SETINFO LIB-NAME ioredis, CLIENT SETINFO LIB-VER
//     5.9.2 (Redis 7.2's; 7.0 refuses them and ioredis ignores the errors),
//     then INFO (the ready check: it waits for loading:0)
//   DEL, SET                                           setup
//   MULTI, SET, INCR, INCRBY, GET, DEL, EXISTS, EXPIRE, TTL, MGET, EXEC
//   GET, SET
//   MULTI, SET, INCR (on a string: fails inside EXEC), GET, EXEC
//   MULTI, GET, EXEC                                   one command, still wrapped
//   MULTI (sent at once: multi({pipeline: false})), SET -> QUEUED, DISCARD
//   GET
//   MULTI, SET, SET io:a (wrong arity: refused at queue time), EXEC ->
//     EXECABORT
//   GET, PING, DEL
const Redis = require('ioredis');
const { Scenario } = require('./scenario');

new Scenario('ioredis_multi').run(async (t) => {
  const r = new Redis({ host: t.host, port: t.port, maxRetriesPerRequest: 1, connectTimeout: 5000, commandTimeout: 5000 });
  try {
    t.step = 'setup';
    await r.del('io:a', 'io:n', 'io:gone', 'io:s');
    await r.set('io:gone', 'x');

    t.step = 'first multi';
    const results = await r
      .multi()
      .set('io:a', '1')
      .incr('io:n')
      .incrby('io:n', 41)
      .get('io:a')
      .del('io:gone')
      .exists('io:gone')
      .expire('io:a', 100)
      .ttl('io:a')
      .mget('io:a', 'io:n', 'io:missing')
      .exec();
    t.check('exec results', results, [
      [null, 'OK'], [null, 1], [null, 42], [null, '1'], [null, 1], [null, 0], [null, 1], [null, 100],
      [null, ['1', '42', null]],
    ]);
    t.check('io:n after exec', await r.get('io:n'), '42');

    t.step = 'an error inside EXEC';
    await r.set('io:s', 'not a number');
    const mixed = await r.multi().set('io:a', '2').incr('io:s').get('io:a').exec();
    t.check('mixed: length', mixed.length, 3);
    t.check('mixed[0]', mixed[0], [null, 'OK']);
    if (!(mixed[1] && mixed[1][0] instanceof Error && /not an integer/.test(mixed[1][0].message))) {
      t.fail(`mixed[1]: expected an error with "not an integer", got ${JSON.stringify(mixed[1])}`);
    }
    t.check('mixed[2]', mixed[2], [null, '2']);

    t.step = 'single command';
    t.check('single command', await r.multi().get('io:a').exec(), [[null, '2']]);

    t.step = 'discard';
    // multi({ pipeline: false }) sends MULTI at once; each command answers QUEUED.
    t.check('MULTI (not pipelined)', await r.multi({ pipeline: false }), 'OK');
    t.check('SET inside MULTI', await r.set('io:a', 'discarded'), 'QUEUED');
    t.check('DISCARD', await r.discard(), 'OK');
    t.check('io:a after discard', await r.get('io:a'), '2');

    t.step = 'EXECABORT';
    try {
      await r.multi().set('io:a', '3').call('SET', 'io:a').exec();
      t.fail('a transaction with a command refused at queue time did not fail');
    } catch (e) {
      if (!/EXECABORT/.test(e.message)) t.fail(`EXECABORT expected, got: ${e.message}`);
    }
    t.check('io:a after EXECABORT', await r.get('io:a'), '2');

    t.step = 'the connection still works';
    t.check('PING after the transactions', await r.ping(), 'PONG');
    await r.del('io:a', 'io:n', 'io:s');
  } finally {
    r.disconnect();
  }
});
