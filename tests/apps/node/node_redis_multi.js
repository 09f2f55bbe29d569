'use strict';
// node-redis v4 multi().exec(): the replies of the queued commands, each
// transformed by its command (numbers, nulls, arrays); an error inside EXEC
// rejects exec() with a MultiErrorReply that holds every reply and the
// index of the failed one; execAsPipeline() sends the same commands without
// MULTI; WATCH on an isolated connection, spoiled by another client, makes
// exec() reject with WatchError.
//
// Commands node-redis 4.7.1 (@redis/client 1.6.1) sends (redis-cli MONITOR
// against redis-server 7.0.15; MONITOR shows queued commands when EXEC runs
// them):
//   at connect: CLIENT SETINFO LIB-VER / LIB-NAME (refused by 7.0, ignored);
//     no HELLO, no INFO, no SELECT
//   DEL, SET                                               setup
//   MULTI, SET, INCR, INCRBY, GET, DEL, EXISTS, EXPIRE, TTL, MGET, EXEC
//   GET, SET
//   MULTI, SET, INCR (on a string: fails inside EXEC), GET, EXEC
//   GET
//   SET, GET                                  execAsPipeline: no MULTI, no EXEC
//   a new (isolated) connection: WATCH nr:a, GET nr:a; the other client:
//     SET nr:a; then MULTI, SET (not run), EXEC -> null: WatchError
//   GET, DEL, QUIT, QUIT
const { createClient, WatchError } = require('redis');
const { Scenario } = require('./scenario');

new Scenario('node_redis_multi').run(async (t) => {
  const options = {
    socket: { host: t.host, port: t.port, connectTimeout: 5000, reconnectStrategy: false },
  };
  const c = createClient(options);
  const other = createClient(options);
  c.on('error', (e) => t.fail(`client error: ${e.message}`));
  other.on('error', (e) => t.fail(`other client error: ${e.message}`));
  try {
    t.step = 'connect';
    await c.connect();
    await other.connect();

    t.step = 'setup';
    await c.del(['nr:a', 'nr:n', 'nr:gone', 'nr:s']);
    await c.set('nr:gone', 'x');

    t.step = 'first multi';
    const replies = await c
      .multi()
      .set('nr:a', '1')
      .incr('nr:n')
      .incrBy('nr:n', 41)
      .get('nr:a')
      .del('nr:gone')
      .exists('nr:gone')
      .expire('nr:a', 100)
      .ttl('nr:a')
      .mGet(['nr:a', 'nr:n', 'nr:missing'])
      .exec();
    t.check('exec replies', replies, ['OK', 1, 42, '1', 1, 0, true, 100, ['1', '42', null]]);
    t.check('nr:n after exec', await c.get('nr:n'), '42');

    t.step = 'an error inside EXEC';
    await c.set('nr:s', 'not a number');
    try {
      await c.multi().set('nr:a', '2').incr('nr:s').get('nr:a').exec();
      t.fail('exec() with a failing INCR did not reject');
    } catch (e) {
      t.check('error class', e.constructor.name, 'MultiErrorReply');
      t.check('errorIndexes', e.errorIndexes, [1]);
      if (e.replies) {
        t.check('replies[0]', e.replies[0], 'OK');
        t.check('replies[2]', e.replies[2], '2');
        if (!/not an integer/.test(String(e.replies[1] && e.replies[1].message))) {
          t.fail(`replies[1]: expected "not an integer", got ${e.replies[1]}`);
        }
      } else {
        t.fail(`MultiErrorReply without replies: ${e.message}`);
      }
    }
    t.check('nr:a after the EXEC with an error', await c.get('nr:a'), '2');

    t.step = 'execAsPipeline';
    t.check('execAsPipeline', await c.multi().set('nr:p', 'v').get('nr:p').execAsPipeline(), ['OK', 'v']);

    t.step = 'watch';
    const aborted = await c.executeIsolated(async (iso) => {
      await iso.watch('nr:a');
      const value = await iso.get('nr:a');
      await other.set('nr:a', 'changed');
      try {
        await iso.multi().set('nr:a', `${value}!`).exec();
        return false;
      } catch (e) {
        if (!(e instanceof WatchError)) throw e;
        return true;
      }
    });
    t.check('WatchError after another client wrote the watched key', aborted, true);
    t.check('nr:a after the aborted transaction', await c.get('nr:a'), 'changed');

    await c.del(['nr:a', 'nr:n', 'nr:s', 'nr:p']);
  } finally {
    if (c.isOpen) await c.quit();
    if (other.isOpen) await other.quit();
  }
});
