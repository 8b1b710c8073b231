"""The book's numbers are deterministic per machine: the same seed gives the same run, bit for bit. Two
short trainings of a tiny float32 GPT through book.training's loop, same seeds, must produce equal losses,
gradient norms, evaluations and weights (exact equality, not closeness)."""
import minigrad as mg
from minigrad.backend import np
from book.models.gpt import GPT, GPTConfig
from book.training import TrainConfig, train

MODEL = GPTConfig(vocab_size=19, block_size=8, n_layer=2, n_head=2, n_embd=16)


def one_run(seed=0):
    rng = np.random.default_rng(123)
    data = {"train": (np.cumsum(rng.integers(1, 3, 2000)) % MODEL.vocab_size).astype(np.uint16),
            "val": (np.cumsum(rng.integers(1, 3, 500)) % MODEL.vocab_size).astype(np.uint16)}
    mg.manual_seed(seed)
    model = GPT(MODEL)
    config = TrainConfig(max_iters=6, batch_size=4, block_size=8, warmup_iters=2, eval_interval=3, eval_iters=2,
                         progress=False)
    history = train(model, data, config)
    return history, {name: p.data.copy() for name, p in model.named_parameters()}


def test_same_seed_same_run_bitwise():
    (first, weights1), (second, weights2) = one_run(), one_run()
    assert len(first.train_loss) == 6
    assert first.train_loss == second.train_loss          # floats compared with ==: bitwise equal
    assert first.grad_norm == second.grad_norm
    assert first.val_loss == second.val_loss and first.eval_train_loss == second.eval_train_loss
    for name in weights1:
        assert np.array_equal(weights1[name], weights2[name]), name


def test_another_seed_another_run():
    (first, _), (other, _) = one_run(seed=0), one_run(seed=1)
    assert first.train_loss != other.train_loss           # the test above is not trivially true
