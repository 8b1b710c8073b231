"""Time the O(T) attention variants against FlashAttention on the CPU as the sequence grows: where do they win?

    python benchmarks/bench_linear_attention.py [--T 256 512 1024 2048 4096 8192] [--window 256] [--reps 3]
                                                [--backward] [--quick]

All causal, B=1, H=8, D=Dv=64, float32, the Numba CPU kernels of kernels/ (the feature maps are applied before the
clock starts; they cost O(T D)):
- flash: kernels/flash_attention/cpu.py, exact softmax attention, O(T^2 D) work;
- linear: kernels/linear_attention/cpu.py with elu + 1 features (F = 64) and the denominator, O(T C D + T D^2);
- lightning: kernels/lightning_attention/cpu.py, TransNormerLLM's decays, the same chunked product with decay;
- sliding window: kernels/sliding_window_attention/cpu.py, each query sees its last `--window` keys, O(T w D).
Medians of `--reps` runs after a warm-up run (which loads or compiles the kernels); the variants alternate within
each repetition so that a slow spell of the machine hits all. Prints a table (ms, and the ratio to flash) and, per
variant, the crossover: the first T from which on it beats flash. A script, not a test: nothing is asserted.
"""
import argparse
import statistics
import time

import numpy as np

from kernels.flash_attention import cpu as flash
from kernels.lightning_attention import cpu as lightning
from kernels.lightning_attention import transnormer_slopes
from kernels.linear_attention import cpu as linear
from kernels.linear_attention.reference import elu_features
from kernels.sliding_window_attention import cpu as sliding

B, H, D = 1, 8, 64


def variants(T, window, backward):
    """{name: zero-argument function}, on the same random inputs."""
    rng = np.random.default_rng(0)
    q, k, v, do = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
    fq, fk = elu_features(q), elu_features(k)
    slope = np.array(transnormer_slopes(H), dtype=np.float32)

    def flash_run():
        o, lse = flash.forward(q, k, v, True)
        if backward:
            flash.backward(q, k, v, o, lse, do, True)

    def linear_run():
        o, den = linear.forward(fq, fk, v)
        if backward:
            linear.backward(fq, fk, v, o, den, do)

    def lightning_run():
        lightning.forward(q, k, v, slope)
        if backward:
            lightning.backward(q, k, v, do, slope)

    def sliding_run():
        o, lse = sliding.forward(q, k, v, window)
        if backward:
            sliding.backward(q, k, v, o, lse, do, window)

    return {"flash": flash_run, "linear": linear_run, "lightning": lightning_run, f"window {window}": sliding_run}


def measure(T, window, backward, reps):
    """{name: median seconds}."""
    runs = variants(T, window, backward)
    for run in runs.values():
        run()                                                    # warm-up
    times = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def crossover(lengths, results, name):
    """The first T from which on `name` is faster than flash, or None."""
    faster = [results[T][name] < results[T]["flash"] for T in lengths]
    for i in range(len(lengths)):
        if all(faster[i:]):
            return lengths[i]
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--backward", action="store_true", help="time forward + backward (default: forward)")
    parser.add_argument("--quick", action="store_true", help="T = 128, 256, 512, 1 repetition")
    args = parser.parse_args()
    lengths, reps = ([128, 256, 512], 1) if args.quick else (sorted(args.T), args.reps)
    what = "forward + backward" if args.backward else "forward"
    print(f"causal attention, {what}, B={B} H={H} D={D} float32, CPU; medians of {reps}, ms (ratio to flash)")
    results = {}
    for T in lengths:
        results[T] = measure(T, args.window, args.backward, reps)
        names = list(results[T])
        if T == lengths[0]:
            print(f"{'T':>6} " + " ".join(f"{name:>18}" for name in names))
        flash_time = results[T]["flash"]
        print(f"{T:>6} " + " ".join(f"{1e3 * t:>9.1f} ({t / flash_time:5.2f}x)" for t in results[T].values()),
              flush=True)
    for name in names[1:]:
        T = crossover(lengths, results, name)
        print(f"crossover {name:>12}: " + (f"faster than flash from T = {T} on" if T is not None else
                                            f"not faster than flash up to T = {lengths[-1]}"))


if __name__ == "__main__":
    main()
