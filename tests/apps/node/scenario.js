'use strict';
// What every node scenario shares: the address, a deadline, checks.
//
// A scenario is run as `node <script> HOST PORT` (or with REDHUB_HOST and
// REDHUB_PORT in the environment). It checks every result itself, prints
// each mismatch to stderr and exits 1 if there was any, 2 at its deadline,
// 3 if node ended before the scenario did, 0 (after printing "ok") when
// all held. CommonJS, and syntax that Debian 12's node 18 accepts.
const util = require('util');

const DEADLINE_MS = 20000;

class Scenario {
  constructor(name) {
    this.name = name;
    const args = process.argv.slice(2);
    this.host = args[0] || process.env.REDHUB_HOST || '127.0.0.1';
    const port = args[1] || process.env.REDHUB_PORT;
    if (!port) {
      process.stderr.write(`usage: node ${process.argv[1]} HOST PORT (or REDHUB_HOST, REDHUB_PORT)\n`);
      process.exit(64);
    }
    this.port = Number(port);
    this.failures = [];
    this.step = 'start';
    // The deadline does not keep the process alive by itself.
    this.timer = setTimeout(() => {
      this.finished = true;
      process.stderr.write(`${this.name}: deadline of ${DEADLINE_MS / 1000} s passed at step: ${this.step}\n`);
      this.printFailures();
      process.exit(2);
    }, DEADLINE_MS);
    this.timer.unref();
    // A body that waits on nothing that keeps node running (a promise never
    // settled) would let node end by itself with status 0.
    this.finished = false;
    process.on('exit', () => {
      if (!this.finished) {
        process.stderr.write(`${this.name}: node ended before the scenario finished, at step: ${this.step}\n`);
        process.exitCode = 3;
      }
    });
  }

  // Records a failure unless got and expected are deeply and strictly equal.
  check(what, got, expected) {
    const same = util.isDeepStrictEqual(got, expected);
    if (!same) {
      this.failures.push(`${what}: got ${util.inspect(got, { depth: 4, breakLength: Infinity })}, expected ${util.inspect(expected, { depth: 4, breakLength: Infinity })}`);
    }
    return same;
  }

  fail(what) {
    this.failures.push(what);
  }

  printFailures() {
    for (const f of this.failures) process.stderr.write(`${this.name}: FAILED ${f}\n`);
  }

  // Runs body(this) (async); an exception is a failure with its stack. The
  // body closes its clients; exit is explicit all the same, so a client left
  // open cannot keep the process running.
  run(body) {
    Promise.resolve()
      .then(() => body(this))
      .catch((e) => this.failures.push(`exception at step "${this.step}": ${e && e.stack ? e.stack : e}`))
      .then(() => {
        clearTimeout(this.timer);
        this.finished = true;
        if (this.failures.length > 0) {
          this.printFailures();
          process.exit(1);
        }
        process.stdout.write('ok\n');
        process.exit(0);
      });
  }
}

module.exports = { Scenario };
