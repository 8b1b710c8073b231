"""Time one GPT training step (forward, backward, AdamW step) in minigrad and in PyTorch on the CPU.

    python benchmarks/bench_train_step.py [--steps 10] [--rounds 2] [--threads 2] [--profile]

Each framework runs in its own process with the same thread count (BLAS and torch), the same
weights (minigrad's initialization copied into torch) and the same batch. Prints the median step
time, the ratio minigrad / torch, and the peak resident memory of each process. This is a script,
not a test: timings depend on the machine, so they are reported, never asserted.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = dict(vocab_size=2048, block_size=128, n_layer=4, n_head=4, n_embd=256, dropout=0.0)
BATCH = 16


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_batch(seed=0):
    from minigrad.backend import np
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, CONFIG["vocab_size"], size=(BATCH, CONFIG["block_size"] + 1))
    return tokens[:, :-1], tokens[:, 1:]


def minigrad_model():
    import minigrad
    from book.models.gpt import GPT, GPTConfig
    minigrad.manual_seed(0)
    return GPT(GPTConfig(**CONFIG))


def torch_twin():
    """The same GPT in PyTorch, with the same parameter names, loaded with minigrad's initial weights."""
    from book.models.gpt import GPTConfig
    from book.torch_reference import GPT, torch_state_dict
    model = GPT(GPTConfig(**CONFIG))
    model.load_state_dict(torch_state_dict(minigrad_model()))
    return model


def run_worker(framework, steps, warmup, profile):
    x, y = make_batch()
    if framework == "torch":
        import torch
        model = torch_twin()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    else:
        import minigrad
        from minigrad import optim
        model = minigrad_model()
        opt = optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
        x, y = minigrad.tensor(x), minigrad.tensor(y)

    def step():
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    first_loss = step()
    for _ in range(warmup - 1):
        step()
    if profile:
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        profiler.enable()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if profile:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return dict(framework=framework, times=times, first_loss=first_loss, peak_rss_mb=peak_rss_mb())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="processes per framework, alternating")
    parser.add_argument("--profile", action="store_true", help="print minigrad's cProfile to stderr")
    parser.add_argument("--worker", choices=["minigrad", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "torch":
            import torch
            torch.set_num_threads(args.threads)
        result = run_worker(args.worker, args.steps, args.warmup, args.profile and args.worker == "minigrad")
        print(json.dumps(result))
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    results = {}
    for _ in range(args.rounds):  # alternate the frameworks so a slow spell of the machine hits both
        for framework in ("minigrad", "torch"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads)] + (["--profile"] if args.profile else [])
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            if done.stderr.strip():
                print(done.stderr, file=sys.stderr)
            run = json.loads(done.stdout.strip().splitlines()[-1])
            if framework in results:
                results[framework]["times"] += run["times"]
                results[framework]["peak_rss_mb"] = max(results[framework]["peak_rss_mb"], run["peak_rss_mb"])
            else:
                results[framework] = run
    for r in results.values():
        r["median_s"], r["min_s"] = statistics.median(r["times"]), min(r["times"])

    c = CONFIG
    print(f"GPT training step: {c['n_layer']} layers, d_model {c['n_embd']}, {c['n_head']} heads, T {c['block_size']}, "
          f"batch {BATCH}, vocab {c['vocab_size']}; forward + backward + AdamW; {args.threads} threads, "
          f"median of {args.rounds} x {args.steps} steps")
    print(f"{'':<10} {'median':>9} {'min':>9} {'peak RSS':>10} {'first loss':>11}")
    for name, r in results.items():
        print(f"{name:<10} {r['median_s'] * 1e3:7.1f}ms {r['min_s'] * 1e3:7.1f}ms {r['peak_rss_mb']:8.0f}MB "
              f"{r['first_loss']:11.5f}")
    print(f"ratio minigrad / torch: {results['minigrad']['median_s'] / results['torch']['median_s']:.2f}x")


if __name__ == "__main__":
    main()
