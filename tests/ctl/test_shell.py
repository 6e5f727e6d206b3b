"""raftkvctl's shell fed from a pipe: commands, quoting, per-line options,
help, exit status."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctlharness import ctl, expect, run  # noqa: E402


def test_pipe(c):
    script = b"""# a comment
set sh/a 1
set 'sh/b c' "x\\ty\\x01"
get sh/a

get "sh/b c"
get -o json sh/a
list sh/
cas sh/a 1 2
get sh/a
del sh/a
get sh/a
"""
    r = ctl("-e", c.endpoints, input=script)
    assert r.rc == 3, r  # the last command's status: get of a deleted key
    lines = r.out.split(b"\n")
    assert lines[:4] == [b"OK", b"OK", b"1", b"x\ty\x01"], r
    assert json.loads(lines[4]) == {"key": "sh/a", "value": "1", "applied_index": json.loads(lines[4])["applied_index"]}
    assert lines[5:10] == [b"sh/a", b"sh/b c", b"OK", b"2", b"OK"], r
    assert r.err.count("\n") == 1 and "get sh/a: not found" in r.err, r


def test_pipe_errors_continue(c):
    r = ctl("-e", c.endpoints, input=b"get sh/nope\nbogus\nset 'unterminated\nset sh/z 1\nget sh/z\n")
    assert r.rc == 0 and r.out == b"OK\n1\n", r
    assert "not found" in r.err and "unknown command 'bogus'" in r.err and "unterminated quote" in r.err, r
    r = ctl("-e", c.endpoints, input=b"set sh/y -\n")
    assert r.rc == 2 and "not available in the shell" in r.err, r
    r = ctl("-e", c.endpoints, input=b"get sh/z\nexit\nget sh/nope\n")
    assert r.rc == 0 and r.out == b"1\n", r


def test_help(c):
    r = expect(ctl("-e", c.endpoints, input=b"help\nhelp cas\n"))
    assert b"transfer-leader" in r.out and b"--absent" in r.out and b"exit | quit" in r.out, r


def test_global_options_in_shell(c):
    # -o given to the shell counts for every line; on a line, for that line only.
    r = expect(ctl("-e", c.endpoints, "-o", "json", input=b"set sh/j v\nget -o plain sh/j\nget sh/j\n"))
    lines = r.out.split(b"\n")
    assert json.loads(lines[0])["ok"] is True and lines[1] == b"v" and json.loads(lines[2])["value"] == "v", r


if __name__ == "__main__":
    run([test_pipe, test_pipe_errors_continue, test_help, test_global_options_in_shell])
