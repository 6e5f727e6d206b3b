"""checker.py - linearizability of a recorded key-value history.

Owns the Wing-Gong / Lowe / Porcupine search used by the nemesis runs
(tests/chaos/nemesis.py): the history is split per key (P-compositionality:
a history is linearizable iff each key's sub-history is), and each key is
searched with just-in-time linearization over the call/return entry list,
memoising (linearized-set bitset, register state) so no configuration is
explored twice.  The model is one register per key with get/set/cas/del.

Outcomes of an operation:
  "ok"      the reply says what happened (for cas: applied or CAS_FAILED with
            the current value; for del: deleted or NOT_FOUND)
  "fail"    a reply that guarantees the op had no effect: the op is dropped
  "unknown" no reply, TIMEOUT, connection lost after sending: the op may
            take effect at any point after its invocation, so its return
            time is +infinity (Porcupine's convention); an unknown get has no
            effect and is dropped.

Usable alone on a history file written by nemesis.py:
    /usr/bin/python3 tests/chaos/checker.py HISTORY.jsonl
"""
import json
import sys
import time

INF = float("inf")

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"


class Op:
    """One client operation.  kind: get | set | cas | del.
    value: what set/cas writes; expected: cas's expectation (None = the key
    must be absent); out: get's result, or the current value a failed cas
    reported (None = absent); applied: cas/del with outcome ok: True if it
    took effect (False: CAS_FAILED / NOT_FOUND)."""

    __slots__ = ("id", "client", "kind", "key", "value", "expected", "out", "applied", "outcome",
                 "inv", "ret", "note")

    def __init__(self, kind, key, inv, ret, outcome=OK, value=None, expected=None, out=None,
                 applied=True, client=0, id=None, note=None):
        self.kind, self.key, self.inv, self.ret = kind, key, inv, ret
        self.outcome, self.value, self.expected, self.out = outcome, value, expected, out
        self.applied, self.client, self.id, self.note = applied, client, id, note

    def to_json(self):
        return {s: getattr(self, s) for s in self.__slots__ if s != "ret"} | {
            "ret": None if self.ret == INF else self.ret}

    @classmethod
    def from_json(cls, d):
        d = dict(d)
        if d.get("ret") is None:
            d["ret"] = INF
        return cls(**d)

    def __repr__(self):
        if self.kind == "get":
            what = "get()->%s" % _v(self.out)
        elif self.kind == "set":
            what = "set(%s)" % _v(self.value)
        elif self.kind == "del":
            what = "del()" + ("" if self.outcome != OK else "" if self.applied else "->NOT_FOUND")
        elif self.outcome == OK and not self.applied:
            what = "cas(%s->%s)->FAILED(current %s)" % (_v(self.expected), _v(self.value), _v(self.out))
        else:
            what = "cas(%s->%s)" % (_v(self.expected), _v(self.value))
        ret = "inf" if self.ret == INF else "%.3f" % self.ret
        return "#%s c%s %s %s [%.3f, %s]%s" % (self.id, self.client, what, self.outcome, self.inv, ret,
                                               " (%s)" % self.note if self.note else "")


def _v(x):
    return "absent" if x is None else repr(x)


def step(state, op):
    """The register model: (legal, next state) of op applied in state."""
    k = op.kind
    if op.outcome == UNKNOWN:
        if k == "set":
            return True, op.value
        if k == "cas":
            return True, op.value if state == op.expected else state
        if k == "del":
            return True, None
        return True, state
    if k == "get":
        return state == op.out, state
    if k == "set":
        return True, op.value
    if k == "cas":
        if op.applied:
            return state == op.expected, op.value
        return state == op.out and state != op.expected, state
    if k == "del":
        return (state is not None) == bool(op.applied), None
    raise ValueError("unknown op kind %r" % k)


def prepare(ops):
    """The ops the search has to place: definite failures and unknown gets
    go (no effect); unknown writes whose value nobody ever observed go too --
    such a write can always be moved to the end of a linearization (after
    everything, since it never returned), and nothing between it and the next
    blind write can depend on its value, so dropping it changes no verdict.
    Exception: a del that reports it deleted something observes "present",
    so an unknown write that such a del may follow is kept."""
    seen = set()
    last_del = {}  # key -> latest return of a del that deleted something
    for o in ops:
        if o.kind == "del" and o.outcome == OK and o.applied:
            last_del[o.key] = max(last_del.get(o.key, -INF), o.ret)
        if o.outcome == FAIL:
            continue
        if o.kind == "get" and o.outcome == OK:
            seen.add(o.out)
        elif o.kind == "cas":
            seen.add(o.expected)
            if o.outcome == OK and not o.applied:
                seen.add(o.out)
    keep = []
    for o in ops:
        if o.outcome == FAIL:
            continue
        if o.outcome == UNKNOWN:
            if o.kind == "get":
                continue
            if o.kind in ("set", "cas") and o.value not in seen and last_del.get(o.key, -INF) < o.inv:
                continue
            o.ret = INF
        keep.append(o)
    return keep


class Result:
    """verdict: True (linearizable), False (a violation; explain() says
    where), None (search budget exhausted: inconclusive)."""

    def __init__(self, key, verdict, n_ops, steps, detail=None):
        self.key, self.verdict, self.n_ops, self.steps, self.detail = key, verdict, n_ops, steps, detail

    def explain(self):
        if self.verdict is True:
            return "key %r: linearizable (%d ops)" % (self.key, self.n_ops)
        if self.verdict is None:
            return "key %r: inconclusive, search budget of %d steps used up (%d ops)" % (
                self.key, self.steps, self.n_ops)
        return self.detail


def check_key(ops, key=None, initial=None, budget=2_000_000):
    """Search one key's ops (already prepared) for a linearization."""
    n = len(ops)
    if n == 0:
        return Result(key, True, 0, 0)
    # Entry list: 2i = call of op i, 2i+1 = its return.  Calls sort before
    # returns at the same instant, so touching ops count as concurrent (the
    # lenient reading: no false alarms from clock granularity).
    order = sorted(range(2 * n), key=lambda e: (ops[e >> 1].inv if e % 2 == 0 else ops[e >> 1].ret, e & 1))
    HEAD = 2 * n
    nxt = [None] * (2 * n + 1)
    prv = [None] * (2 * n + 1)
    last = HEAD
    for e in order:
        nxt[last] = e
        prv[e] = last
        last = e
    nxt[last] = None

    def lift(e):  # unlink call e and its return e+1
        for x in (e, e + 1):
            p, q = prv[x], nxt[x]
            nxt[p] = q
            if q is not None:
                prv[q] = p

    def unlift(e):  # relink in reverse order of lift
        for x in (e + 1, e):
            p, q = prv[x], nxt[x]
            nxt[p] = x
            if q is not None:
                prv[q] = x

    cache = set()
    stack = []  # (call entry, state before it)
    state = initial
    lin = 0
    depth = best = 0
    best_info = None
    steps = 0
    e = nxt[HEAD]
    while nxt[HEAD] is not None:
        steps += 1
        if steps > budget:
            return Result(key, None, n, steps)
        if e % 2 == 0:
            op = ops[e >> 1]
            legal, new = step(state, op)
            if legal:
                nlin = lin | (1 << (e >> 1))
                if (nlin, new) not in cache:
                    cache.add((nlin, new))
                    stack.append((e, state))
                    state, lin = new, nlin
                    depth += 1
                    lift(e)
                    e = nxt[HEAD]
                    continue
            e = nxt[e]
        else:
            # The return of an op not yet linearized: every order tried from
            # here is a dead end.  Remember the deepest point for the report.
            if depth >= best:
                best = depth
                best_info = (lin, state, e >> 1, [ops[x >> 1] for x, _ in stack[-4:]])
            if not stack:
                return Result(key, False, n, steps, _explain(key, ops, best, best_info))
            ce, state = stack.pop()
            depth -= 1
            lin &= ~(1 << (ce >> 1))
            unlift(ce)
            e = nxt[ce]
    return Result(key, True, n, steps)


def _explain(key, ops, best, info):
    lin, state, blocked, tail = info
    b = ops[blocked]
    # The ops that could have gone next at the deepest point: not yet placed
    # and invoked before the blocking op returned.
    cands = [o for i, o in enumerate(ops) if not (lin >> i) & 1 and o.inv <= b.ret and i != blocked]
    cands.sort(key=lambda o: o.inv)
    lines = ["key %r: NOT linearizable; at most %d of %d ops could be ordered." % (key, best, len(ops)),
             "  last ops placed: " + ("; ".join(map(repr, tail)) if tail else "(none)"),
             "  register then holds %s" % _v(state),
             "  stuck on: %r (it must take effect before it returned; nothing concurrent with it "
             "makes it legal)" % b]
    if cands:
        lines.append("  concurrent candidates (%d): %s%s" % (len(cands), "; ".join(map(repr, cands[:8])),
                                                            " ..." if len(cands) > 8 else ""))
    return "\n".join(lines)


def check(ops, initial=None, budget=2_000_000):
    """Check a whole history, key by key.  Returns (verdict, [Result]):
    verdict True / False / None as in Result, False if any key fails."""
    by_key = {}
    for o in prepare(list(ops)):
        by_key.setdefault(o.key, []).append(o)
    results = []
    for key in sorted(by_key, key=str):
        results.append(check_key(by_key[key], key, initial, budget))
    verdict = True
    if any(r.verdict is False for r in results):
        verdict = False
    elif any(r.verdict is None for r in results):
        verdict = None
    return verdict, results


def load(path):
    """Ops from a history file: one JSON object per line; lines with an
    "op" member are ops, others (faults, notes) are skipped."""
    ops = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if "op" in d:
                ops.append(Op.from_json(d["op"]))
    return ops


def main(argv):
    if len(argv) != 2:
        print("usage: checker.py HISTORY.jsonl")
        return 2
    ops = load(argv[1])
    t0 = time.monotonic()
    verdict, results = check(ops)
    for r in results:
        print(r.explain())
    print("%d ops, %d keys: %s in %.2fs" % (len(ops), len(results),
                                           {True: "linearizable", False: "NOT linearizable",
                                            None: "inconclusive"}[verdict], time.monotonic() - t0))
    return 0 if verdict is True else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
