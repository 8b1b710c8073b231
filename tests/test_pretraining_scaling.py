"""book.pretraining.scaling (parameter counts, 6ND, power-law and loss-surface fits) against hand counts, the real
models (minigrad's and the PyTorch twin), numpy.polyfit, scipy.stats.linregress and a numerical minimization; and
book.pretraining.sweep: resumable, and its stored results reproduced by rerunning the first steps (bit for bit on the
machine that wrote them, to float32 round-off on another CPU)."""
import json
from dataclasses import replace

import pytest
import scipy.optimize
import scipy.stats
import torch
from threadpoolctl import threadpool_info

from minigrad.backend import np
from book.models.gpt import GPT, GPTConfig
from book.pretraining import sweep as sw
from book.pretraining.scaling import (LossSurface, compute_frontier, fit_loss_surface, fit_power_law, profile_floor,
                                      flops_per_token, gpt_parameter_counts, kaplan_parameters, training_flops)
from book.torch_reference import GPT as TorchGPT

EMBEDDINGS = ("transformer.wte.", "transformer.wpe.", "lm_head.")
CONFIGS = [GPTConfig(vocab_size=5, block_size=3, n_layer=1, n_head=1, n_embd=4),
           GPTConfig(vocab_size=37, block_size=11, n_layer=3, n_head=3, n_embd=21),
           GPTConfig(vocab_size=1024, block_size=64, n_layer=2, n_head=2, n_embd=64, bias=False)]


def test_hand_count_of_a_tiny_gpt():
    # d = 4, one block: c_attn 4x12 + 12, c_proj 4x4 + 4, c_fc 4x16 + 16, c_proj 16x4 + 4, two LayerNorms 2 x 8;
    # then ln_f 8; wte 5x4, wpe 3x4, lm_head 4x5
    block = (48 + 12) + (16 + 4) + (64 + 16) + (64 + 4) + 16
    counts = gpt_parameter_counts(CONFIGS[0])
    assert counts["non_embedding"] == block + 8 == 252
    assert counts["embedding"] == 20 + 12 + 20
    assert counts["total"] == 304
    assert counts["kaplan"] == kaplan_parameters(1, 4) == 12 * 16


@pytest.mark.parametrize("config", CONFIGS, ids=["tiny", "odd", "no-bias"])
def test_counts_equal_the_models_parameters(config):
    counts = gpt_parameter_counts(config)
    model = GPT(config)
    named = dict(model.named_parameters())
    assert counts["total"] == sum(p.numel() for p in named.values())
    assert counts["non_embedding"] == sum(p.numel() for n, p in named.items() if not n.startswith(EMBEDDINGS))
    twin = TorchGPT(config)
    assert counts["total"] == sum(p.numel() for p in twin.parameters())
    assert counts["non_embedding"] == sum(p.numel() for n, p in twin.named_parameters() if not n.startswith(EMBEDDINGS))


def test_training_flops_is_6ND():
    assert training_flops(1_000_000, 2_000_000) == 6 * 1e6 * 2e6
    np.testing.assert_array_equal(training_flops(np.array([10, 20]), 3), [180.0, 360.0])
    config = CONFIGS[0]   # weights 12 d^2 = 192, V d = 20; attention 12 n_layer T d = 12 * 1 * 3 * 4
    assert flops_per_token(config) == 6 * (192 + 20) + 144
    with pytest.raises(ValueError, match="training_flops"):
        training_flops(-1, 5)
    with pytest.raises(ValueError, match="gpt_parameter_counts"):
        gpt_parameter_counts(GPTConfig(n_layer=0))


@pytest.mark.parametrize("config", CONFIGS[1:], ids=["odd", "no-bias"])
def test_flops_per_token_equals_torchs_flop_counter(config):
    """torch's FlopCounterMode counts the matrix products of a forward and backward pass of the PyTorch twin (its
    attention runs in one fused kernel the counter does not see); the attention term, counted apart, is two
    products of (T, d) by (d, T) and (T, T) by (T, d) per head-concatenated layer, three times over."""
    from torch.utils.flop_counter import FlopCounterMode

    twin = TorchGPT(config)
    idx = torch.randint(0, config.vocab_size, (3, config.block_size))
    with FlopCounterMode(display=False) as counter:
        _, loss = twin(idx, idx)
        loss.backward()
    assert counter.get_total_flops() == flops_per_token(config, attention=False) * idx.numel()
    q = torch.randn(config.block_size, config.n_embd, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        (q @ q.T @ q).sum().backward()          # scores (T, T), then the weighted sum (T, d), with their gradients
    attention_per_token = (flops_per_token(config) - flops_per_token(config, attention=False)) / config.n_layer
    assert counter.get_total_flops() == attention_per_token * config.block_size


def test_power_law_fit_matches_polyfit_and_linregress():
    rng = np.random.default_rng(0)
    compute = np.logspace(12, 17, 9)                                       # (9,)
    loss = 7.3 * compute ** -0.05 * np.exp(rng.normal(0, 0.01, 9))        # (9,)
    fit = fit_power_law(compute, loss)
    slope, intercept = np.polyfit(np.log(compute), np.log(loss), 1)
    reference = scipy.stats.linregress(np.log(compute), np.log(loss))
    assert fit.exponent == pytest.approx(slope, rel=1e-9)
    assert fit.coefficient == pytest.approx(np.exp(intercept), rel=1e-9)
    assert fit.exponent_se == pytest.approx(reference.stderr, rel=1e-9)
    assert fit.log_coefficient_se == pytest.approx(reference.intercept_stderr, rel=1e-9)
    assert abs(fit.exponent + 0.05) < 3 * fit.exponent_se                 # the known exponent, within the error
    exact = fit_power_law([1.0, 10.0, 100.0], [2.0, 1.0, 0.5])
    assert exact.exponent == pytest.approx(np.log10(0.5)) and exact.exponent_se == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="fit_power_law"):
        fit_power_law([1.0, 2.0], [1.0, -1.0])


def test_compute_frontier_by_hand():
    #        runs:  0    1    2    3    4
    compute = [4.0, 1.0, 2.0, 8.0, 2.0]
    loss = [3.0, 5.0, 5.5, 2.0, 4.0]
    assert compute_frontier(compute, loss) == [1, 4, 0, 3]                # run 2 is beaten by run 4 at equal compute
    with pytest.raises(ValueError, match="compute_frontier"):
        compute_frontier([1.0, 2.0], [1.0])


def test_loss_surface_recovers_known_exponents_and_optimum():
    N = np.repeat([3e4, 1e5, 3e5, 1e6, 3e6], 3)                            # (15,) the sweep's grid shape
    D = np.tile([5e5, 1e6, 2e6], 5)                                        # (15,)
    truth = LossSurface(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28, covariance=np.zeros((5, 5)),
                        rms_log_residual=0.0)
    fit = fit_loss_surface(N, D, truth(N, D))
    for name in ("E", "A", "alpha", "B", "beta"):
        assert getattr(fit, name) == pytest.approx(getattr(truth, name), rel=1e-6), name
    assert fit.size_exponent == pytest.approx(0.28 / 0.62, rel=1e-6)
    compute = 6e13
    n_opt, d_opt = fit.compute_optimal(compute)
    best = scipy.optimize.minimize_scalar(lambda log_n: truth(np.exp(log_n), compute / (6 * np.exp(log_n))),
                                          bounds=(np.log(1e3), np.log(1e9)), method="bounded",
                                          options={"xatol": 1e-10})
    assert n_opt == pytest.approx(np.exp(best.x), rel=1e-5) and 6 * n_opt * d_opt == pytest.approx(compute)
    noisy = fit_loss_surface(N, D, truth(N, D) * np.exp(np.random.default_rng(1).normal(0, 0.003, 15)))
    assert abs(noisy.size_exponent - truth.size_exponent) < 3 * noisy.size_exponent_se + 0.02
    with pytest.raises(ValueError, match="fit_loss_surface"):
        fit_loss_surface(N[:4], D[:4], truth(N, D)[:4])


def test_profile_floor_finds_the_true_floor_and_its_exponents():
    """Held at the true floor, the refit recovers alpha and beta with zero residual; held elsewhere it fits worse."""
    N = np.repeat([3e4, 1e5, 3e5, 1e6, 3e6], 3)                            # (15,)
    D = np.tile([5e5, 1e6, 2e6], 5)                                        # (15,)
    truth = LossSurface(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28, covariance=np.zeros((5, 5)),
                        rms_log_residual=0.0)
    rows = profile_floor(N, D, truth(N, D), [0.0, 1.0, 1.7, 2.0])
    at_truth = rows[2]
    assert at_truth["alpha"] == pytest.approx(0.34, rel=1e-5) and at_truth["beta"] == pytest.approx(0.28, rel=1e-5)
    assert at_truth["size_exponent"] == pytest.approx(0.28 / 0.62, rel=1e-5) and at_truth["rms_log_residual"] < 1e-8
    assert min(r["rms_log_residual"] for i, r in enumerate(rows) if i != 2) > 1e-4
    assert fit_loss_surface(N, D, truth(N, D)).rms_log_residual < 1e-8     # the free fit agrees with the profile


# ---- the sweep --------------------------------------------------------------------------------------

TINY = replace(sw.SweepSettings.fast(), sizes=[[1, 16]], steps=[3], extra_seeds=[], eval_tokens=512)


def test_sweep_appends_runs_and_resumes(tmp_path):
    out = tmp_path / "sweep.json"
    first = sw.sweep(TINY, out, progress=False)
    assert [sw.run_key(r) for r in first["runs"]] == [(1, 16, 3, 0)] and len(first["runs"][0]["train_loss"]) == 3
    stored = out.read_text()
    again = sw.sweep(TINY, out, progress=False)                            # nothing left to run: the file is kept
    assert out.read_text() == stored and again["runs"] == first["runs"]
    more = sw.sweep(replace(TINY, seeds=[0, 1]), tmp_path / "more.json", progress=False)
    assert more["runs"][0]["train_loss"] == first["runs"][0]["train_loss"]   # the same run in another file: bitwise
    with pytest.raises(ValueError, match="load_results"):
        sw.sweep(replace(TINY, steps=[4]), out, progress=False)


def test_stored_sweep_reproduces_its_first_steps():
    results = json.loads(sw.DEFAULT_RESULTS.read_text())
    settings = sw.SweepSettings(**results["settings"])
    assert settings == sw.SweepSettings()                                  # the file is the sweep the module runs
    run = results["runs"][0]
    first = 5
    losses = sw.replay_first_steps(settings, sw.token_data(settings), run["n_layer"], run["n_embd"], run["steps"],
                                   run["seed"], first)
    stored = run["train_loss"][:first]
    here = sw.machine()
    if sw.same_machine(results["machine"], here):
        assert losses == stored                                            # floats compared with ==: bitwise
    else:
        differ = {key: (results["machine"].get(key), here.get(key)) for key in sw.MACHINE_KEYS
                  if results["machine"].get(key) != here.get(key)}
        np.testing.assert_allclose(losses, stored, rtol=1e-5, atol=0, err_msg=(
            f"the results file was written on another machine (stored, here: {differ}): on another CPU the "
            "float32 sums run in another order (other BLAS kernels, other SIMD widths), so only agreement to "
            "round-off is expected; a larger difference means the code computes something else"))
    counts = gpt_parameter_counts(settings.model_config(run["n_layer"], run["n_embd"]))
    assert run["parameters"] == counts and run["tokens"] == run["steps"] * settings.batch_size * settings.block_size


def test_one_blas_thread_inside_and_restored_after():
    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    before = blas_threads()
    if not before:
        pytest.skip("NumPy is not linked against a BLAS that threadpoolctl sees")
    with sw.one_blas_thread():
        assert set(blas_threads()) == {1}                                  # even when NumPy loaded with more
    assert blas_threads() == before
