"""Records what CPython's random module returns for a range of seeds and
calls, as the reference for package pyrandom. Needs only the standard
library; run through `make fixtures` or directly with any Python 3.8+.
Writes vectors.json next to this file."""
import json
import os
import random
import sys

here = os.path.dirname(os.path.abspath(__file__))

SEEDS = [0, 1, 2, 3, 7, 42, 1234, 2**31 - 1, 2**32 - 1, 2**32, 2**32 + 5,
         2**40 + 3, 2**63 - 1, -5]

cases = []
for seed in SEEDS:
    c = {"seed": seed}
    r = random.Random(seed)
    c["uint32"] = [r.getrandbits(32) for _ in range(8)]
    r.seed(seed)
    c["bits"] = [[k, r.getrandbits(k)] for k in (0, 1, 2, 5, 8, 13, 31, 32, 33, 47, 63, 64)]
    r.seed(seed)
    c["random"] = [r.random().hex() for _ in range(6)]
    r.seed(seed)
    c["below"] = [[nn, r.randrange(nn)] for nn in (1, 2, 3, 5, 7, 8, 9, 100, 1000, 2**31 + 1, 10**12)]
    r.seed(seed)
    # sample over both branches: pool (n <= setsize) and set (n > setsize)
    samples = []
    for nn, k in [(1, 1), (5, 0), (5, 5), (10, 1), (20, 4), (21, 4), (22, 4), (22, 6),
                  (30, 6), (40, 8), (85, 8), (86, 8), (85, 16), (86, 16), (100, 16),
                  (300, 16), (300, 50), (1000, 16), (120, 120), (340, 100)]:
        samples.append([nn, k, r.sample(range(nn), k)])
    c["sample"] = samples
    r.seed(seed)
    c["choices"] = [[nn, k, r.choices(range(nn), k=k)] for nn, k in [(1, 3), (3, 5), (7, 16), (1000, 4)]]
    cases.append(c)

out = {"python": sys.version.split()[0], "cases": cases}
with open(os.path.join(here, "vectors.json"), "w") as f:
    json.dump(out, f, separators=(",", ":"))
    f.write("\n")
print("wrote vectors.json (Python %s)" % out["python"])
