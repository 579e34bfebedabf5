# py_heavy.py: a Python workload that allocates heavily (dicts, lists,
# strings, sets, tuples, bytearrays, a few threads), printing a digest of
# what it built. tests/preload/run-programs compares its output with and
# without the shim; PYTHONMALLOC=malloc sends every Python object through
# malloc (not only pymalloc's 256 KiB arenas).
import hashlib
import threading

h = hashlib.sha256()

# a few hundred thousand small objects: dict of lists of strings
d = {}
for i in range(120000):
    k = "key-%d" % (i * 7919 % 100003)
    d.setdefault(k, []).append(str(i) * (i % 5 + 1))
h.update(repr(sorted(d.items())[:2000]).encode())
print("dict entries", len(d), "values", sum(len(v) for v in d.values()))

# churn: build and drop structures of growing sizes
total = 0
for rnd in range(30):
    xs = [(j, str(j), [j] * (j % 7)) for j in range(5000 + rnd * 300)]
    s = set(x[1] for x in xs if x[0] % 3)
    total += len(s) + sum(len(x[2]) for x in xs)
    del xs, s
print("churn total", total)

# string building and big buffers (large objects, realloc growth)
parts = []
buf = bytearray()
for i in range(20000):
    parts.append("line %06d %s\n" % (i, "x" * (i % 50)))
    buf += parts[-1].encode()
text = "".join(parts)
h.update(buf)
print("text", len(text), "buf", len(buf), text.count("x"))

# threads allocating at once, objects freed by other threads
results = [None] * 4
def work(n):
    results[n] = {("t%d-%d" % (n, i)): list(range(i % 30)) for i in range(30000)}
ts = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
h.update(repr([len(r) for r in results]).encode())
print("threads", sum(sum(len(v) for v in r.values()) for r in results))
del results

print("sha256", h.hexdigest())
