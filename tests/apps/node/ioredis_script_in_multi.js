'use strict';
// ioredis defineCommand inside multi(): script commands queued between MULTI
// and EXEC and run by EXEC. On a connection that has not run the script yet,
// ioredis queues it as EVAL (the full script); once the connection has sent
// it, as EVALSHA. An EVALSHA of an unknown sha is queued (QUEUED) and fails
// inside EXEC with NOSCRIPT while the other commands run.
//
// Commands ioredis 5.9.2 sends (redis-cli MONITOR against redis-server
// 7.0.15; MONITOR shows the queued commands when EXEC runs them):
//   at connect: CLIENT SETINFO x2 (refused by 7.0, ignored), INFO
//   DEL, SCRIPT FLUSH                                        setup
//   MULTI, EVAL script 1 sm:k a, GET sm:k, EXEC              first use: EVAL
//     (Lua: APPEND, STRLEN)
//   MULTI, EVALSHA sha 1 sm:k bc, GET sm:k, EXEC             then EVALSHA
//   MULTI, EVALSHA 000...0 0, GET sm:k, EXEC                 NOSCRIPT inside EXEC
//   GET, DEL
const Redis = require('ioredis');
const { Scenario } = require('./scenario');

const APPEND_LEN = `redis.call('APPEND', KEYS[1], ARGV[1]) return redis.call('STRLEN', KEYS[1])`;

new Scenario('ioredis_script_in_multi').run(async (t) => {
  const r = new Redis({ host: t.host, port: t.port, maxRetriesPerRequest: 1, connectTimeout: 5000, commandTimeout: 5000 });
  r.defineCommand('appendLen', { numberOfKeys: 1, lua: APPEND_LEN });
  const sent = [];
  const send = r.sendCommand.bind(r);
  r.sendCommand = (command, stream) => {
    sent.push(command);
    return send(command, stream);
  };
  const names = () => sent.splice(0).map((c) => c.name);
  try {
    t.step = 'setup';
    await r.del('sm:k');
    t.check('SCRIPT FLUSH', await r.script('FLUSH'), 'OK');
    names();

    t.step = 'first multi';
    let results = await r.multi().appendLen('sm:k', 'a').get('sm:k').exec();
    t.check('first multi: results', results, [[null, 1], [null, 'a']]);
    t.check('first multi: sent', names(), ['multi', 'eval', 'get', 'exec']);

    t.step = 'second multi';
    results = await r.multi().appendLen('sm:k', 'bc').get('sm:k').exec();
    t.check('second multi: results', results, [[null, 3], [null, 'abc']]);
    t.check('second multi: sent', names(), ['multi', 'evalsha', 'get', 'exec']);

    t.step = 'NOSCRIPT inside EXEC';
    results = await r.multi().evalsha('0'.repeat(40), 0).get('sm:k').exec();
    t.check('NOSCRIPT multi: length', results.length, 2);
    if (!(results[0] && results[0][0] instanceof Error && /^NOSCRIPT/.test(results[0][0].message))) {
      t.fail(`NOSCRIPT multi: results[0] ${JSON.stringify(results[0])}, expected a NOSCRIPT error`);
    }
    t.check('NOSCRIPT multi: results[1]', results[1], [null, 'abc']);

    t.check('sm:k at the end', await r.get('sm:k'), 'abc');
    await r.del('sm:k');
  } finally {
    r.disconnect();
  }
});
