#!/bin/sh
# preload_smoke.sh SO: run real programs on the allocator through the
# LD_PRELOAD shim and check they compute what they compute on glibc's
# malloc: a shuffle and sort of 200000 lines (coreutils), and a Python
# workload (JSON round trip, four threads churning bytearrays of random
# sizes, freed in random order and across threads).
set -eu
[ -f "$1" ] || { echo "preload_smoke: no $1" >&2; exit 1; }
so=$(realpath "$1") # ld.so does not take relative LD_PRELOAD paths
# The shim must really be loaded, or the comparisons below prove nothing.
LD_PRELOAD="$so" cat /proc/self/maps | grep -q libkmalloc-preload.so ||
    { echo "preload_smoke: $so was not preloaded" >&2; exit 1; }

py='
import json, random, threading
random.seed(7)
d = [dict(a=i, b=str(i) * 7, c=list(range(i % 40))) for i in range(50000)]
s = json.dumps(d)
assert json.loads(s) == d
shared = []
lock = threading.Lock()
def churn(seed):
    r = random.Random(seed)
    mine = []
    for i in range(40000):
        mine.append(bytearray(r.randint(1, 70000 if i % 97 == 0 else 3000)))
        if len(mine) > 500:
            x = mine.pop(r.randrange(len(mine)))
            with lock:
                shared.append(x)
                if len(shared) > 300:
                    shared.pop(0)
ts = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(len(s), sum(len(x) for x in d[:1000]))
'
want_sort=$(seq 1 200000 | sort -n | cksum)
got_sort=$(seq 1 200000 | LD_PRELOAD="$so" sort -R | LD_PRELOAD="$so" sort -n | cksum)
[ "$want_sort" = "$got_sort" ] || { echo "preload_smoke: sort differs under the shim" >&2; exit 1; }
want_py=$(python3 -c "$py")
got_py=$(LD_PRELOAD="$so" python3 -c "$py")
[ "$want_py" = "$got_py" ] || { echo "preload_smoke: python differs: '$got_py' vs '$want_py'" >&2; exit 1; }
echo "preload_smoke: sort and python agree with glibc malloc under $so"
