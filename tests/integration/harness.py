"""harness.py - what every integration suite (tests/integration/test_*.py) shares.

The command line tools/run-tests.sh gives each suite (--mxsec PATH [--testbed DIR]
[unittest args]), the test bed's location and its start/stop, and the closing line
"integration: N passed, M failed" that run-tests.sh counts. A skipped test counts as
failed: a test that did not run proves nothing.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTBED = os.path.join(ROOT, "tools", "testbed", "testbed.sh")


def start_testbed(tb):
    subprocess.run([TESTBED, "start", tb], check=True)


def stop_testbed(tb):
    subprocess.run([TESTBED, "stop", tb], check=False)


def main(suite):
    """Runs the tests of module `suite` after setting its MXSEC and TB globals; exits 0 iff all passed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxsec", required=True)
    ap.add_argument("--testbed", default=None)
    args, rest = ap.parse_known_args()
    suite.MXSEC = os.path.abspath(args.mxsec)
    suite.TB = os.path.abspath(args.testbed or tempfile.mkdtemp(prefix="mxsec-tb-"))
    prog = unittest.main(module=suite, argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    r = prog.result
    failed = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    passed = r.testsRun - failed - len(r.skipped)
    failed += len(r.skipped)
    print("integration: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
