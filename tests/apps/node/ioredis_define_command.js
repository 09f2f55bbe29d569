'use strict';
// ioredis defineCommand: Lua commands with numberOfKeys. ioredis 5 sends the
// first call of a script on a connection as EVAL (the full script) and every
// later call as EVALSHA; an EVALSHA answered NOSCRIPT is resent as EVAL. The
// scenario records the commands the client writes, so it proves that the
// second call went out as EVALSHA and was answered without a resend (EVAL
// must have put the script in the server's cache).
//
// Commands ioredis 5.9.2 sends (redis-cli MONITOR against redis-server
// 7.0.15):
//   at connect: CLIENT SETINFO LIB-NAME / LIB-VER (refused by 7.0, ignored),
//     INFO (the ready check)
//   DEL, SCRIPT FLUSH                             setup
//   EVAL script 1 dc:n 5 12                       cappedIncr, first call on
//                                                 the connection (Lua: GET, INCRBY)
//   SCRIPT EXISTS sha 000...0                     -> [1, 0]: EVAL cached it
//   EVALSHA sha 1 dc:n 5 12                       second call (Lua: GET, INCRBY)
//   EVALSHA sha 1 dc:n 5 12                       third call, capped (Lua: GET)
//   GET, MSET
//   EVAL script 2 dc:a dc:b +, EVALSHA sha 2 dc:b dc:a -    concatGet (Lua: GET, GET)
//   EVAL script 0 "call 0", EVALSHA sha 0 "call 1"          failing (error_reply)
//   second connection: CLIENT SETINFO x2, INFO, PING,
//     EVAL script 1 dc:n 1 100, EVALSHA sha 1 dc:n 1 100
//   DEL
// An EVALSHA answered NOSCRIPT would be resent as EVAL (not seen here).
// Defined commands inside multi(): ioredis_script_in_multi.js.
const crypto = require('crypto');
const Redis = require('ioredis');
const { Scenario } = require('./scenario');

const CAPPED_INCR = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local by = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
if cur + by > cap then return {cur, 'capped'} end
return {redis.call('INCRBY', KEYS[1], by), 'ok'}
`;
const CONCAT_GET = `return (redis.call('GET', KEYS[1]) or '') .. ARGV[1] .. (redis.call('GET', KEYS[2]) or '')`;
const FAILING = `return redis.error_reply('APPERR ' .. ARGV[1])`;

function connect(t) {
  const r = new Redis({ host: t.host, port: t.port, maxRetriesPerRequest: 1, connectTimeout: 5000, commandTimeout: 5000 });
  r.defineCommand('cappedIncr', { numberOfKeys: 1, lua: CAPPED_INCR });
  r.defineCommand('concatGet', { numberOfKeys: 2, lua: CONCAT_GET });
  r.defineCommand('failing', { numberOfKeys: 0, lua: FAILING });
  // The names of the commands as written to the socket (a script command
  // gets its final name, eval or evalsha, when it is written).
  r.sent = [];
  const send = r.sendCommand.bind(r);
  r.sendCommand = (command, stream) => {
    r.sent.push(command);
    return send(command, stream);
  };
  return r;
}

async function sentBy(r, fn) {
  r.sent = [];
  const result = await fn();
  return { result, names: r.sent.map((c) => c.name) };
}

new Scenario('ioredis_define_command').run(async (t) => {
  const r = connect(t);
  let r2 = null;
  try {
    t.step = 'setup';
    await r.del('dc:n', 'dc:a', 'dc:b');
    t.check('SCRIPT FLUSH', await r.script('FLUSH'), 'OK');
    const sha = crypto.createHash('sha1').update(CAPPED_INCR).digest('hex');

    t.step = 'first call';
    let call = await sentBy(r, () => r.cappedIncr('dc:n', 5, 12));
    t.check('first call result', call.result, [5, 'ok']);
    t.check('first call sent', call.names, ['eval']);
    t.check('SCRIPT EXISTS after EVAL', await r.script('EXISTS', sha, '0'.repeat(40)), [1, 0]);

    t.step = 'second call';
    call = await sentBy(r, () => r.cappedIncr('dc:n', 5, 12));
    t.check('second call result', call.result, [10, 'ok']);
    t.check('second call sent (EVALSHA, no NOSCRIPT resend)', call.names, ['evalsha']);
    call = await sentBy(r, () => r.cappedIncr('dc:n', 5, 12));
    t.check('third call result (capped)', call.result, [10, 'capped']);
    t.check('third call sent', call.names, ['evalsha']);
    t.check('dc:n', await r.get('dc:n'), '10');

    t.step = 'two keys';
    await r.mset('dc:a', 'left', 'dc:b', 'right');
    t.check('concatGet, first', await r.concatGet('dc:a', 'dc:b', '+'), 'left+right');
    call = await sentBy(r, () => r.concatGet('dc:b', 'dc:a', '-'));
    t.check('concatGet, second', call.result, 'right-left');
    t.check('concatGet, second sent', call.names, ['evalsha']);

    t.step = 'error';
    for (let i = 0; i < 2; i++) {
      try {
        await r.failing(`call ${i}`);
        t.fail(`failing (call ${i}) did not reject`);
      } catch (e) {
        t.check(`failing's error (call ${i})`, e.message, `APPERR call ${i}`);
      }
    }

    t.step = 'a second connection';
    // Its first call is EVAL again (ioredis tracks scripts per socket).
    r2 = connect(t);
    t.check('PING on the second connection', await r2.ping(), 'PONG');  // connected and ready
    call = await sentBy(r2, () => r2.cappedIncr('dc:n', 1, 100));
    t.check('second connection, first call', call.result, [11, 'ok']);
    t.check('second connection, first call sent', call.names, ['eval']);
    call = await sentBy(r2, () => r2.cappedIncr('dc:n', 1, 100));
    t.check('second connection, second call', call.result, [12, 'ok']);
    t.check('second connection, second call sent', call.names, ['evalsha']);
    await r.del('dc:n', 'dc:a', 'dc:b');
  } finally {
    r.disconnect();
    if (r2) r2.disconnect();
  }
});
