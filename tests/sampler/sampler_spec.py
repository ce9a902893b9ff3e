#!/usr/bin/python3
"""An independent implementation of docs/sampler.md, written from the document, not from the C++.

    sampler_spec.py                  prints the reference output of every case
    sampler_spec.py --check TOOL     gives TOOL (tests/sampler/sampler_dump.cpp) every case on stdin and fails
                                     unless its output is the same, character for character

Pure Python integers: no numpy, any Python 3.
"""

import subprocess
import sys

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class SplitMix64:
    def __init__(self, state):
        self.state = state & MASK

    def next(self):
        self.state = (self.state + GAMMA) & MASK
        return mix64(self.state)

    def below(self, bound):
        # Accept x * bound when its low 64 bits are at least 2^64 mod bound; the result is its high 64 bits.
        threshold = (1 << 64) % bound
        while True:
            product = self.next() * bound
            if product & MASK >= threshold:
                return product >> 64


def epoch_generator(seed, epoch):
    return SplitMix64(mix64(mix64(seed) ^ epoch))


def shuffle(items, begin, end, rng):
    """Fisher-Yates on items[begin:end], from the back."""
    for i in range(end - begin - 1, 0, -1):
        j = rng.below(i + 1)
        items[begin + i], items[begin + j] = items[begin + j], items[begin + i]


def global_order(n, seed, epoch, shuffled=True, shard_sizes=(), window=0):
    if not shuffled:
        return list(range(n))
    rng = epoch_generator(seed, epoch)
    if not shard_sizes:
        order = list(range(n))
        shuffle(order, 0, n, rng)
        return order
    starts = [sum(shard_sizes[:i]) for i in range(len(shard_sizes))]
    shards = list(range(len(shard_sizes)))
    shuffle(shards, 0, len(shards), rng)
    order = []
    for s in shards:
        order.extend(range(starts[s], starts[s] + shard_sizes[s]))
    for begin in range(0, n, window):
        shuffle(order, begin, min(begin + window, n), rng)
    return order


def rank_batches(order, rank, world, batch, evaluation, drop_last, drop_last_batch, position):
    """(index, valid) batches of one rank, from `position` of the order on."""
    n = len(order)
    remaining = n - position
    share = remaining // world if drop_last else -(-remaining // world)
    samples = []
    for k in range(share):
        p = position + rank + k * world
        samples.append((order[p % n], not (evaluation and p >= n)))
    count = share // batch if drop_last_batch else -(-share // batch)
    return [samples[i * batch:(i + 1) * batch] for i in range(count)]


def parse(args):
    opts = dict(a.split("=", 1) for a in args[1:])
    return args[0], opts


def run_case(args):
    command, o = parse(args)
    if command == "below":
        rng = SplitMix64(int(o["state"]))
        return " ".join(str(rng.below(int(o["bound"]))) for _ in range(int(o["count"]))) + "\n"
    n = int(o["n"])
    shard_sizes = [int(s) for s in o["shards"].split(",")] if "shards" in o else []
    order = global_order(n, int(o.get("seed", 0)), int(o.get("epoch", 0)), o.get("shuffle", "1") == "1", shard_sizes,
                         int(o.get("window", 0)))
    if command == "order":
        return " ".join(map(str, order)) + "\n"
    world = int(o["world"])
    lines = []
    for rank in range(world):
        batches = rank_batches(order, rank, world, int(o["batch"]), o.get("mode") == "eval",
                               o.get("drop_last") == "1", o.get("drop_last_batch") == "1", int(o.get("position", 0)))
        text = "".join((" | " if k else " ") + " ".join(str(i) + ("" if valid else "*") for i, valid in b)
                       for k, b in enumerate(batches))
        lines.append("rank %d (%d batches):%s\n" % (rank, len(batches), text))
    return "".join(lines)


MAX64 = str((1 << 64) - 1)
CASES = [
    # The rejection step of below(): 2^64 mod bound is about half of 2^64 for these bounds, so draws get rejected.
    ["below", "state=0", "bound=9223372036854775809", "count=64"],
    ["below", "state=" + MAX64, "bound=" + MAX64, "count=16"],
    ["below", "state=12345", "bound=3", "count=64"],
    ["below", "state=7", "bound=1", "count=4"],
    ["order", "n=1"],
    ["order", "n=2", "seed=0", "epoch=0"],
    ["order", "n=10", "seed=0", "epoch=0"],
    ["order", "n=10", "seed=0", "epoch=1"],
    ["order", "n=10", "seed=1", "epoch=0"],
    ["order", "n=1000", "seed=42", "epoch=3"],
    ["order", "n=257", "seed=" + MAX64, "epoch=9223372036854775807"],
    ["order", "n=12", "shuffle=0"],
    ["order", "n=10", "seed=5", "epoch=2", "shards=3,4,3", "window=4"],
    ["order", "n=158", "seed=9", "epoch=1", "shards=100,1,50,7", "window=16"],
    ["order", "n=40", "seed=3", "epoch=0", "shards=10,10,10,10", "window=1"],
    ["order", "n=40", "seed=3", "epoch=0", "shards=40", "window=40"],
    ["order", "n=40", "seed=3", "epoch=0", "shards=13,27", "window=1000"],
    ["ranks", "n=10", "seed=1", "epoch=0", "world=4", "batch=2"],
    ["ranks", "n=10", "seed=1", "epoch=0", "world=4", "batch=2", "mode=eval"],
    ["ranks", "n=10", "seed=1", "epoch=0", "world=4", "batch=2", "drop_last=1"],
    ["ranks", "n=10", "seed=1", "epoch=0", "world=3", "batch=2", "drop_last_batch=1"],
    ["ranks", "n=3", "seed=2", "epoch=4", "world=8", "batch=1", "mode=eval"],
    ["ranks", "n=103", "seed=8", "epoch=5", "world=4", "batch=7", "position=56"],
    ["ranks", "n=103", "seed=8", "epoch=5", "world=3", "batch=7", "position=56", "mode=eval"],
    ["ranks", "n=103", "seed=8", "epoch=5", "world=5", "batch=4", "position=103"],
    ["ranks", "n=50", "seed=4", "epoch=1", "world=2", "batch=8", "shards=20,5,25", "window=8"],
    ["ranks", "n=20", "world=3", "batch=3", "shuffle=0", "mode=eval"],
]


def self_test():
    # SplitMix64's published sequence for seed 1234567, which this file must reproduce before it judges anyone.
    rng = SplitMix64(1234567)
    expected = [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
                16408922859458223821]
    got = [rng.next() for _ in expected]
    if got != expected:
        sys.exit("sampler_spec.py: SplitMix64 self-test failed: %s" % got)


def main():
    self_test()
    if len(sys.argv) == 1:
        for case in CASES:
            sys.stdout.write("$ %s\n%s" % (" ".join(case), run_case(case)))
        return 0
    if len(sys.argv) != 3 or sys.argv[1] != "--check":
        sys.exit(__doc__)
    cases = [" ".join(case) for case in CASES]
    result = subprocess.run([sys.argv[2]], input="\n".join(cases) + "\n", stdout=subprocess.PIPE,
                            universal_newlines=True)
    if result.returncode != 0:
        sys.exit("sampler_spec.py: %s exited with %d" % (sys.argv[2], result.returncode))
    answers = {}
    line = None  # text before the first "$ " line answers no case
    for text in result.stdout.splitlines(keepends=True):
        if text.startswith("$ "):
            line = text[2:].rstrip("\n")
            answers[line] = ""
        else:
            answers[line] = answers.get(line, "") + text
    failures = 0
    for case, line in zip(CASES, cases):
        expected = run_case(case)
        got = answers.get(line, "<no answer>\n")
        if got != expected:
            failures += 1
            print("MISMATCH: " + line)
            for want, have in zip(expected.splitlines() + ["<end>"], got.splitlines() + ["<end>"]):
                if want != have:
                    print("  spec: %s\n  C++:  %s" % (want[:300], have[:300]))
                    break
    print("%d of %d cases identical in C++ and in the Python spec" % (len(CASES) - failures, len(CASES)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
