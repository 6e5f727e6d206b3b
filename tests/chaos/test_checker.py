#!/usr/bin/python3
"""test_checker.py - the linearizability checker (checker.py) must accept
valid histories and catch known non-linearizable ones; plus one throughput
run on a large random valid history.  Plain stdlib, runs alone:
    /usr/bin/python3 tests/chaos/test_checker.py [-k NAME]
"""
import os
import random
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checker import FAIL, INF, OK, UNKNOWN, Op, check  # noqa: E402

K = "k"


def get(out, inv, ret, key=K, outcome=OK, c=0):
    return Op("get", key, inv, ret, outcome, out=out, client=c)


def put(v, inv, ret, key=K, outcome=OK, c=0):
    return Op("set", key, inv, ret, outcome, value=v, client=c)


def cas(exp, v, inv, ret, applied=True, current=None, key=K, outcome=OK, c=0):
    return Op("cas", key, inv, ret, outcome, value=v, expected=exp, out=current, applied=applied, client=c)


def dele(inv, ret, applied=True, key=K, outcome=OK, c=0):
    return Op("del", key, inv, ret, outcome, applied=applied, client=c)


def number(ops):
    for i, o in enumerate(ops):
        o.id = i
    return ops


def verdict(ops, **kw):
    return check(number(ops), **kw)


def ok(ops, **kw):
    v, res = verdict(ops, **kw)
    assert v is True, "valid history rejected:\n" + "\n".join(r.explain() for r in res)


def bad(ops, must_mention=None, **kw):
    v, res = verdict(ops, **kw)
    assert v is False, "non-linearizable history accepted (verdict %r)" % v
    text = "\n".join(r.explain() for r in res if r.verdict is False)
    if must_mention:
        assert must_mention in text, "explanation does not mention %r:\n%s" % (must_mention, text)
    return text


# ---- valid histories -------------------------------------------------------


def test_sequential_valid():
    ok([get(None, 0, 1), put("a", 2, 3), get("a", 4, 5), cas("a", "b", 6, 7), get("b", 8, 9),
        cas("a", "c", 10, 11, applied=False, current="b"), dele(12, 13), get(None, 14, 15),
        dele(16, 17, applied=False), cas(None, "d", 18, 19), get("d", 20, 21)])


def test_concurrent_either_order():
    # two overlapping writes, later reads see the one that went last
    ok([put("a", 0, 10), put("b", 0, 10, c=1), get("a", 11, 12)])
    ok([put("a", 0, 10), put("b", 0, 10, c=1), get("b", 11, 12)])
    # a read overlapping a write may see the old or the new value
    ok([put("a", 0, 1), put("b", 2, 6), get("a", 3, 4, c=1), get("b", 5, 7, c=2)])


def test_touching_ops_count_as_concurrent():
    ok([put("a", 0, 5), get(None, 5, 6, c=1)])


def test_unknown_write_later_appears():
    ok([put("a", 0, 1), put("b", 2, 3, outcome=UNKNOWN), get("a", 4, 5, c=1), get("b", 10, 11, c=1)])


def test_unknown_write_never_appears():
    ok([put("a", 0, 1), put("b", 2, 3, outcome=UNKNOWN), get("a", 4, 5, c=1), get("a", 10, 11, c=1)])


def test_unknown_cas_may_apply():
    ok([put("a", 0, 1), cas("a", "b", 2, 3, outcome=UNKNOWN), get("b", 20, 21, c=1)])
    ok([put("a", 0, 1), cas("a", "b", 2, 3, outcome=UNKNOWN), get("a", 20, 21, c=1)])


def test_unknown_write_seen_only_by_a_del():
    # nothing reads x, but the del found something to delete: only x
    ok([put("x", 0, 1, outcome=UNKNOWN), dele(2, 3, applied=True, c=1)])


def test_failed_ops_and_unknown_gets_are_dropped():
    ok([put("a", 0, 1), put("b", 2, 3, outcome=FAIL), get("zz", 4, 5, outcome=UNKNOWN), get("a", 6, 7)])


def test_keys_are_independent():
    ok([put("a", 0, 1, key="x"), put("b", 2, 3, key="y"), get("a", 4, 5, key="x"), get("b", 4, 5, key="y"),
        get(None, 6, 7, key="z")])


def test_counter_increments():
    ops = [cas(None, "1", 0, 1), cas("1", "2", 2, 5, c=1), cas("1", "2", 3, 6, c=2, applied=False, current="2"),
           cas("2", "3", 7, 8, c=2), cas("3", "4", 9, 10, outcome=UNKNOWN), get("4", 11, 12)]
    ok(ops)


# ---- violations --------------------------------------------------------------


def test_stale_read_after_acked_write():
    bad([put("a", 0, 1), put("b", 2, 3), get("a", 4, 5, c=1)], must_mention="get()->'a'")


def test_lost_write():
    bad([put("a", 0, 1), get(None, 5, 6, c=1)], must_mention="'k'")
    bad([put("a", 0, 1), put("b", 2, 3, c=1), get("a", 9, 10), get("a", 11, 12)])


def test_read_of_never_written_value():
    bad([put("a", 0, 1), get("zz", 2, 3)], must_mention="zz")


def test_read_before_write_started():
    bad([get("a", 0, 1), put("a", 2, 3)])


def test_cas_succeeding_on_wrong_value():
    bad([put("a", 0, 1), cas("b", "c", 2, 3)], must_mention="cas('b'->'c')")
    bad([cas("a", "c", 2, 3)])  # expects a value the key never had


def test_cas_failing_on_right_value():
    bad([put("a", 0, 1), cas("a", "c", 2, 3, applied=False, current="a")])
    bad([put("a", 0, 1), cas("x", "c", 2, 3, applied=False, current="q")])  # wrong current reported


def test_del_results():
    bad([put("a", 0, 1), dele(2, 3, applied=False)])
    bad([dele(0, 1, applied=True)])


def test_concurrent_ok_in_one_order_only():
    # the cas is seen by the first read, so the second (later) read must see it too
    bad([put("a", 0, 1), cas("a", "b", 2, 8), get("b", 3, 4, c=1), get("a", 5, 7, c=2)])
    # both writes finished before either read: reads cannot disagree
    bad([put("a", 0, 10), put("b", 0, 10, c=1), get("b", 11, 12), get("a", 13, 14)])


def test_unknown_write_appearing_then_vanishing():
    bad([put("a", 0, 1), put("b", 2, 3, outcome=UNKNOWN), get("b", 4, 5, c=1), get("a", 6, 7, c=1)])


def test_unknown_write_seen_before_invoked():
    bad([put("a", 0, 1), get("b", 2, 3, c=1), put("b", 4, 5, outcome=UNKNOWN)])


def test_failed_write_that_appears():
    bad([put("a", 0, 1), put("b", 2, 3, outcome=FAIL), get("b", 4, 5, c=1)], must_mention="get()->'b'")


def test_counter_double_increment():
    # two increments from 1 both claim success: one must have failed
    bad([cas(None, "1", 0, 1), cas("1", "2", 2, 5, c=1), cas("1", "2", 3, 6, c=2), get("2", 7, 8)])


def test_budget_gives_inconclusive():
    ops = [put("v%d" % i, 0, 100, c=i) for i in range(14)] + [get("v%d" % i, 101 + i, 101.5 + i) for i in range(2)]
    v, res = verdict(ops, budget=50)
    assert v is None, "tiny budget should leave the verdict open, got %r" % v
    assert "inconclusive" in res[0].explain()


# ---- throughput ----------------------------------------------------------


def random_history(rng, n_ops, clients=10, keys=5, unknown_rate=0.02):
    """A valid history by construction: every op takes effect at a random
    instant inside [invoke, return]; results are computed in that order.
    Some writes get an unknown outcome (applied or not, return +inf)."""
    t = [0.0] * clients
    pending = []
    for i in range(n_ops):
        c = rng.randrange(clients)
        inv = t[c] + rng.random() * 0.002
        ret = inv + rng.expovariate(1 / 0.005)
        t[c] = ret
        key = "k%d" % rng.randrange(keys)
        r = rng.random()
        kind = "get" if r < 0.45 else "set" if r < 0.7 else "cas" if r < 0.97 else "del"
        pending.append([rng.uniform(inv, ret), inv, ret, c, key, kind, i])
    pending.sort()
    state, last_val = {}, {}
    ops = []
    for at, inv, ret, c, key, kind, i in pending:
        cur = state.get(key)
        unknown = kind != "get" and rng.random() < unknown_rate
        takes = not unknown or rng.random() < 0.5
        if kind == "get":
            op = get(cur, inv, ret, key=key, c=c)
        elif kind == "set":
            op = put("v%d" % i, inv, ret, key=key, c=c)
            if takes:
                state[key] = op.value
        elif kind == "del":
            op = dele(inv, ret, applied=cur is not None, key=key, c=c)
            if takes:
                state[key] = None
        else:
            exp = cur if rng.random() < 0.7 else last_val.get(key)
            applied = exp == cur
            op = cas(exp, "v%d" % i, inv, ret, applied=applied, current=None if applied else cur, key=key, c=c)
            if applied and takes:
                state[key] = op.value
        if unknown:
            op.outcome = UNKNOWN
            op.ret = INF
        if cur is not None:
            last_val[key] = cur
        ops.append(op)
    ops.sort(key=lambda o: o.inv)
    return number(ops)


def test_throughput_large_random_history():
    rng = random.Random(8)
    n = 20000
    ops = random_history(rng, n)
    t0 = time.monotonic()
    v, res = check(ops)
    took = time.monotonic() - t0
    assert v is True, "\n".join(r.explain() for r in res if r.verdict is not True)
    print("   %d ops (10 clients, 5 keys, 2%% unknown writes) checked in %.2fs (%.0f ops/s), %d search steps" %
          (n, took, n / took, sum(r.steps for r in res)))
    assert took < 60, "checker too slow: %.1fs for %d ops" % (took, n)
    # A violation makes the search try every placement of the unknown writes
    # pending at that point before it can say no; the nemesis runs see about
    # 1 unknown op in 10,000, so the detection run uses 0.1 %.
    ops = random_history(rng, n, unknown_rate=0.001)
    v, res = check(ops)
    assert v is True, "\n".join(r.explain() for r in res if r.verdict is not True)
    # the same history with one read turned stale is caught
    gets = [o for o in ops if o.kind == "get" and o.out is not None and o.id > n // 2]
    victim = gets[0]
    prior = [o for o in ops if o.kind == "set" and o.key == victim.key and o.ret < victim.inv - 1.0 and
             o.outcome == OK]
    if prior:
        victim.out = prior[0].value
    else:
        victim.out = "never-written"
    t0 = time.monotonic()
    v, res = check(ops)
    assert v is False, "a stale read in a large history was not caught (verdict %r)" % v
    print("   %d ops with 0.1%% unknown writes and one stale read: caught in %.2fs" % (n, time.monotonic() - t0))


def main(argv):
    only = argv[argv.index("-k") + 1] if "-k" in argv else None
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for name, fn in tests:
        if only and only not in name:
            continue
        t0 = time.monotonic()
        try:
            fn()
        except Exception:  # noqa: BLE001 - report every test
            failed += 1
            print("FAIL %s" % name)
            traceback.print_exc(file=sys.stdout)
        else:
            print("PASS %s (%.2fs)" % (name, time.monotonic() - t0))
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
