"""What every Python scenario shares: the address, a deadline, checks.

A scenario is run as `python3 <script> HOST PORT` (or with REDHUB_HOST and
REDHUB_PORT in the environment). It checks every result itself, prints
each mismatch to stderr and exits 1 if there was any, 2 at its deadline,
0 (after printing "ok") when all held.
"""
import os
import signal
import sys
import traceback

DEADLINE_SECONDS = 20


def strict_equal(a, b):
    """== that also compares types, element by element: True is not 1, b"1" is not 1."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    return a == b


class Scenario:
    def __init__(self, name):
        self.name = name
        args = sys.argv[1:]
        self.host = args[0] if len(args) > 0 else os.environ.get("REDHUB_HOST", "127.0.0.1")
        port = args[1] if len(args) > 1 else os.environ.get("REDHUB_PORT")
        if port is None:
            sys.stderr.write("usage: %s HOST PORT (or REDHUB_HOST, REDHUB_PORT)\n" % sys.argv[0])
            sys.exit(64)
        self.port = int(port)
        self.failures = []

        def on_deadline(signum, frame):
            sys.stderr.write("%s: deadline of %d s passed in:\n%s" % (
                self.name, DEADLINE_SECONDS, "".join(traceback.format_stack(frame))))
            sys.stderr.flush()
            os._exit(2)

        signal.signal(signal.SIGALRM, on_deadline)
        signal.alarm(DEADLINE_SECONDS)

    def check(self, what, got, expected):
        """Records a failure unless got == expected (and type-equal for bool/int)."""
        same = strict_equal(got, expected)
        if not same:
            self.failures.append("%s: got %r, expected %r" % (what, got, expected))
        return same

    def fail(self, what):
        self.failures.append(what)

    def run(self, body):
        """Runs body(self); an exception is a failure with its traceback."""
        try:
            body(self)
        except Exception:
            self.failures.append("exception:\n" + traceback.format_exc())
        signal.alarm(0)
        if self.failures:
            for f in self.failures:
                sys.stderr.write("%s: FAILED %s\n" % (self.name, f))
            sys.exit(1)
        print("ok")
        sys.exit(0)
