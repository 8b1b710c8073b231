"""A scaling sweep (chapter 12): GPTs of several sizes, each trained at several token budgets on the training plays,
every run's final loss on the held-out plays written to a results file that the notebook plots.

    python -m book.pretraining.sweep [--fast] [--out PATH]

The recipe is chapter 03's (book.training.train: AdamW with decay on the matrices, linear warmup then cosine decay
to lr / 10, clipping at 1) on the byte-level BPE of book.tokenizers.bpe trained on the training plays, with
<|endoftext|> between works. Equations and counts: book.pretraining.scaling.

Resumable: each finished run is appended to the results file (written to a temporary file, then renamed), and a
rerun skips the runs already there; a file written with other settings is refused, not mixed. Deterministic: the
weights come from minigrad.manual_seed(seed), the batches from a NumPy Generator seeded with the same seed, NumPy's
BLAS runs on one thread; the same run repeated on the same machine gives the same losses bit for bit. On another
CPU the float32 sums run in another order (OpenBLAS picks its kernels for the processor, NumPy its SIMD width), so
the results file records the machine and a rerun elsewhere agrees to round-off only
(tests/test_pretraining_scaling.py reruns the first steps of the first run and compares them with the file).
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from threadpoolctl import threadpool_info, threadpool_limits

import minigrad
from minigrad.backend import np
from book.data import shakespeare as sh
from book.models.gpt import GPT, GPTConfig
from book.pretraining.scaling import flops_per_token, gpt_parameter_counts, training_flops
from book.tokenizers.bpe import BPETokenizer
from book.training import TrainConfig, configure_optimizer, evaluate, make_scheduler, train, train_step

EOT = "<|endoftext|>"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = REPO_ROOT / "chapters" / "12_pretraining" / "results" / "scaling_sweep.json"
FORMAT = "minigrad scaling sweep v1"
MACHINE_KEYS = ("processor", "numpy_simd", "openblas_core", "numpy")   # what decides the bits (see same_machine)


@dataclass
class SweepSettings:
    """Everything that decides the numbers: the sizes (n_layer, n_embd; heads of width 32, or one head below 32),
    the step budgets (tokens = steps x batch_size x block_size), the seeds, the recipe."""
    sizes: list = field(default_factory=lambda: [[1, 32], [2, 64], [3, 96], [4, 128]])
    steps: list = field(default_factory=lambda: [200, 800, 2400])
    seeds: list = field(default_factory=lambda: [0])
    extra_seeds: list = field(default_factory=lambda: [1, 2])    # repeated at the middle budget only
    vocab_size: int = 1024
    block_size: int = 64
    batch_size: int = 32
    learning_rate: float = 6e-3       # at width base_width; scaled by base_width / n_embd (chosen by the pilot)
    base_width: int = 64
    warmup_fraction: float = 0.1
    weight_decay: float = 0.1
    eval_tokens: int = 65536          # the held-out loss: the first eval_tokens tokens of the validation plays

    @classmethod
    def fast(cls):
        return cls(sizes=[[1, 16], [1, 32]], steps=[8, 16], extra_seeds=[1], vocab_size=384, block_size=32,
                   batch_size=8, eval_tokens=4096)

    def runs(self):
        """(n_layer, n_embd, steps, seed) of every run, in the order they are trained: the grid, then the extra
        seeds at the middle budget (where the sizes are compared)."""
        grid = [(L, d, s, seed) for seed in self.seeds for s in self.steps for L, d in self.sizes]
        return grid + [(L, d, self.middle_steps, seed) for seed in self.extra_seeds for L, d in self.sizes]

    @property
    def middle_steps(self):
        return self.steps[len(self.steps) // 2]

    def model_config(self, n_layer, n_embd):
        return GPTConfig(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=n_layer,
                         n_head=max(1, n_embd // 32), n_embd=n_embd, dropout=0.0)

    def train_config(self, n_embd, steps, seed):
        lr = self.learning_rate * self.base_width / n_embd
        return TrainConfig(max_iters=steps, batch_size=self.batch_size, block_size=self.block_size,
                           learning_rate=lr, min_lr=lr / 10, warmup_iters=max(1, round(self.warmup_fraction * steps)),
                           weight_decay=self.weight_decay, eval_interval=0, seed=seed, progress=False)


def code_version():
    """`git describe --always --dirty` and the commit of the working tree, or "unknown" outside a checkout."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            return "unknown"
    return {"describe": git("describe", "--always", "--dirty"), "commit": git("rev-parse", "HEAD")}


def one_blas_thread():
    """A block in which BLAS runs on one thread, whatever OPENBLAS_NUM_THREADS was when NumPy loaded (a test runner
    or a notebook may have imported NumPy first): one thread sums every product in one fixed order."""
    return threadpool_limits(limits=1, user_api="blas")


def machine():
    """What decides the last bits of a float32 run on this CPU: the processor's model name (/proc/cpuinfo), the SIMD
    extensions NumPy dispatches on, the kernel set OpenBLAS picked at load time (its core name), NumPy's version."""
    from numpy._core import _multiarray_umath as umath

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    openblas = sorted((lib for lib in threadpool_info() if lib["internal_api"] == "openblas"),
                      key=lambda lib: "numpy" not in lib["filepath"])                       # NumPy's, not SciPy's
    return {"processor": model, "numpy_simd": sorted(name for name, on in umath.__cpu_features__.items() if on),
            "openblas_core": openblas[0]["architecture"] if openblas else "unknown",
            "python": platform.python_version(), "numpy": np.__version__}


def same_machine(stored, here):
    """Whether two machine() records promise the same bits: the same processor model, SIMD paths of NumPy, OpenBLAS
    kernels and NumPy version (the Python version does not enter the arithmetic)."""
    return all(stored.get(key) == here.get(key) for key in MACHINE_KEYS)


def tokenizer(vocab_size, cache_dir=None):
    """The byte-level BPE of vocab_size ids (256 bytes, the merges, <|endoftext|>) trained on the
    training plays; cached as JSON in build/data/shakespeare/ under a hash of the training texts."""
    names = sh.split_by_play()["train"]
    texts = [sh.read_work(name) for name in names]
    digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()[:12]
    path = Path(cache_dir or sh.DEFAULT_CACHE) / f"bpe_{vocab_size}_{digest}.json"
    if path.is_file():
        return BPETokenizer.load(path)
    tok = BPETokenizer.train(texts, vocab_size, special_tokens=[EOT])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    tok.save(partial)
    os.replace(partial, path)
    return tok


def token_data(settings):
    """{"train": the training plays, "val": the held-out plays}: uint16 token arrays, works separated by EOT."""
    tok = tokenizer(settings.vocab_size)
    return sh.token_arrays(tok, sh.split_by_play(), separator=EOT)


def run_one(settings, data, n_layer, n_embd, steps, seed):
    """Train one GPT from minigrad.manual_seed(seed) for `steps` steps; its record for the results file."""
    config = settings.model_config(n_layer, n_embd)
    recipe = settings.train_config(n_embd, steps, seed)
    minigrad.manual_seed(seed)
    model = GPT(config)
    began = time.perf_counter()
    history = train(model, data, recipe)
    val = data["val"][:settings.eval_tokens + 1]
    val_loss = evaluate(model, val, settings.batch_size, settings.block_size)
    tokens = steps * settings.batch_size * settings.block_size
    counts = gpt_parameter_counts(config)
    return {"n_layer": n_layer, "n_embd": n_embd, "n_head": config.n_head, "steps": steps, "seed": seed,
            "learning_rate": recipe.learning_rate, "tokens": tokens, "parameters": counts,
            "flops_kaplan": float(training_flops(counts["non_embedding"], tokens)),
            "flops": float(flops_per_token(config) * tokens),
            "train_loss": history.train_loss, "val_loss": val_loss,
            "wall_seconds": time.perf_counter() - began}


def replay_first_steps(settings, data, n_layer, n_embd, steps, seed, first):
    """The batch losses of the first `first` steps of run_one(settings, data, n_layer, n_embd, steps, seed),
    recomputed with book.training's pieces in the order train() calls them (for the reproducibility test)."""
    recipe = settings.train_config(n_embd, steps, seed)
    minigrad.manual_seed(seed)
    model = GPT(settings.model_config(n_layer, n_embd))
    optimizer = configure_optimizer(model, recipe.learning_rate, recipe.weight_decay, recipe.betas)
    scheduler = make_scheduler(optimizer, recipe)
    generator = np.random.default_rng(recipe.seed)
    losses = []
    with one_blas_thread():
        for _ in range(first):
            x, y = sh.get_batch(data["train"], recipe.batch_size, recipe.block_size, generator)
            losses.append(train_step(model, optimizer, x, y, recipe.grad_clip)[0])
            scheduler.step()
    return losses


def run_key(run):
    return (run["n_layer"], run["n_embd"], run["steps"], run["seed"])


def load_results(path, settings):
    """The results file's contents, or a fresh header; refuses a file written with other settings."""
    path = Path(path)
    if not path.is_file():
        return {"format": FORMAT, "settings": asdict(settings), "code_version": code_version(),
                "machine": machine(), "runs": []}
    results = json.loads(path.read_text(encoding="utf-8"))
    if results.get("format") != FORMAT or results.get("settings") != asdict(settings):
        raise ValueError(f"load_results: {path} holds a sweep with other settings ({results.get('settings')}); "
                         f"expected {asdict(settings)}: move it away or pass another --out")
    return results


def save_results(path, results):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)


def sweep(settings, out, progress=True):
    """Train every run of settings.runs() not yet in the results file `out`, appending each as it finishes;
    returns the results. The progress bar counts training steps."""
    from tqdm.std import tqdm

    results = load_results(out, settings)
    done = {run_key(run) for run in results["runs"]}
    todo = [key for key in settings.runs() if key not in done]
    data = token_data(settings)
    bar = tqdm(total=sum(key[2] for key in todo), desc="sweep", unit="step", disable=not progress,
               mininterval=2.0)
    for n_layer, n_embd, steps, seed in todo:
        bar.set_postfix(model=f"{n_layer}x{n_embd}", steps=steps, seed=seed, refresh=True)
        with one_blas_thread():
            results["runs"].append(run_one(settings, data, n_layer, n_embd, steps, seed))
        results["code_version"] = code_version()
        save_results(out, results)
        bar.update(steps)
    bar.close()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a tiny sweep of seconds through the same code")
    parser.add_argument("--out", default=None, help=f"the results file (default {DEFAULT_RESULTS})")
    args = parser.parse_args(argv)
    settings = SweepSettings.fast() if args.fast else SweepSettings()
    out = args.out or (REPO_ROOT / "build" / "scaling_sweep_fast.json" if args.fast else DEFAULT_RESULTS)
    began = time.perf_counter()
    results = sweep(settings, out)
    print(f"{len(results['runs'])} runs in {out} ({time.perf_counter() - began:.0f} s this time)")


if __name__ == "__main__":
    main()
