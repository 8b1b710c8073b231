"""The experiments of chapter 02 (the transformer, piece by piece) on tiny synthetic tasks, each run for several
seeds so that a conclusion does not rest on one initialization.

    x, y = k_back_batch(gen, batch=16, length=64)             # y_t = x_{t-3}: needs relative position
    model = decoder(seed=0, position="rope", max_len=64)      # book.models.decoder_lm.DecoderLM, 2 layers, d 32
    losses = train_decoder(model, lambda step: k_back_batch(gen, 16, 64), steps=400, lr=3e-3)
    acc = per_position_accuracy(model, length=512, n_seqs=8)  # (509,) accuracy at each labelled position

Every random draw comes from a seed: the weights from minigrad.manual_seed(seed), the batches from
np.random.default_rng(seed), the evaluation sequences from a fixed seed shared by every model.
"""
import minigrad as mg
from minigrad import nn, optim
from minigrad.backend import np
from book.models.decoder_lm import DecoderLM, DecoderLMConfig
from book.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer

VOCAB, BACK = 16, 3         # 16 symbols; the label is the token 3 positions back
IGNORE = -100               # positions without a label


def k_back_batch(gen, batch, length, vocab=VOCAB, back=BACK):
    """Random tokens x and labels y_t = x_{t-back}; the first `back` positions have no label."""
    x = gen.integers(0, vocab, size=(batch, length))
    y = np.full((batch, length), IGNORE)
    y[:, back:] = x[:, :-back]
    return x, y


def mod_sum_batch(gen, batch, length, vocab=VOCAB, back=BACK):
    """Random tokens x and labels y_t = (x_t + x_{t-back}) mod vocab: attention fetches, the FFN adds."""
    x = gen.integers(0, vocab, size=(batch, length))
    y = np.full((batch, length), IGNORE)
    y[:, back:] = (x[:, :-back] + x[:, back:]) % vocab
    return x, y


def decoder(seed, xavier=False, **config):
    """A DecoderLM (vocabulary 16, 2 layers, 4 heads, width 32 unless overridden) with weights from `seed`.
    xavier=True redraws every weight matrix but the embeddings with xavier_uniform_, as the 2017 Transformer."""
    mg.manual_seed(seed)
    config = {"vocab_size": VOCAB, "n_layer": 2, "n_head": 4, "d_model": 32, **config}
    model = DecoderLM(DecoderLMConfig(**config))
    if xavier:
        for name, p in model.named_parameters():
            if p.ndim == 2 and "emb" not in name:
                nn.init.xavier_uniform_(p)
    return model


def train_decoder(model, make_batch, steps, lr, warmup=0):
    """AdamW (torch's defaults) on a fresh batch per step, at a constant learning rate after `warmup` steps of
    linear increase; returns the losses (steps,)."""
    opt = optim.AdamW(model.parameters(), lr=lr)
    schedule = optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
    losses = []
    for step in range(steps):
        x, y = make_batch(step)
        _, loss = model(mg.tensor(x), mg.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
    return np.array(losses)


def per_position_accuracy(model, length, n_seqs, seed=1000):
    """Accuracy on 'the token 3 back' at each labelled position (length - 3,), on sequences drawn from `seed`."""
    x, y = k_back_batch(np.random.default_rng(seed), n_seqs, length)
    with mg.no_grad():
        predicted = model(mg.tensor(x))[0].data.argmax(-1)                # (n, length)
    return (predicted == y)[:, BACK:].mean(0)


def extrapolation(schemes, seeds, steps, train_len, eval_lens, eval_tokens):
    """Train one decoder per (scheme, seed) at `train_len` on 'the token 3 back', evaluate at each length.

    Returns (accuracy, per_position): accuracy[scheme] is an array (seeds, lengths), NaN where the scheme has no
    vector for a position (learned positions past the table); per_position[scheme] is (seeds, positions), the
    per-position accuracy at the longest length the scheme can read. Each evaluation uses eval_tokens // length
    sequences, the same ones for every model."""
    accuracy, per_position = {}, {}
    for scheme in schemes:
        accuracy[scheme] = np.full((len(seeds), len(eval_lens)), np.nan)
        rows = []
        for i, seed in enumerate(seeds):
            model = decoder(seed, position=scheme, max_len=train_len)
            gen = np.random.default_rng(seed)
            train_decoder(model, lambda step: k_back_batch(gen, 16, train_len), steps, lr=3e-3)
            for j, length in enumerate(eval_lens):
                if scheme == "learned" and length > train_len:
                    continue                                              # no vector past the table
                acc = per_position_accuracy(model, length, n_seqs=max(1, eval_tokens // length))
                accuracy[scheme][i, j] = acc.mean()
                last = acc
            rows.append(last)
        per_position[scheme] = np.stack(rows)
    return accuracy, per_position


def init_gradient_norms(depth, norm_first, seed, x, y, max_len):
    """|dL/dW2| of each layer's FFN output matrix at initialization (xavier weights), on the batch (x, y)."""
    model = decoder(seed, xavier=True, n_layer=depth, position="learned", max_len=max_len, norm_first=norm_first)
    model(mg.tensor(x), mg.tensor(y))[1].backward()
    return np.array([np.linalg.norm(block.ffn.linear2.weight.grad.data) for block in model.blocks])


def norm_placement(depths, seeds, steps, lr, length, warmup_depth=None, warmup=0):
    """Pre-LN and post-LN decoders (xavier weights, learned positions) trained on 'the token 3 back' at `length`.

    Returns curves[(depth, norm_first)] = array (seeds, steps) of losses; if warmup_depth is given, also
    curves[(warmup_depth, 'post-LN + warmup')]: the post-LN model of that depth with `warmup` warmup steps."""
    curves = {}
    runs = [(d, nf, 0) for d in depths for nf in (True, False)]
    if warmup_depth is not None:
        runs.append((warmup_depth, False, warmup))
    for depth, norm_first, warm in runs:
        key = (depth, "post-LN + warmup") if warm else (depth, norm_first)
        rows = []
        for seed in seeds:
            model = decoder(seed, xavier=True, n_layer=depth, position="learned", max_len=length,
                            norm_first=norm_first)
            gen = np.random.default_rng(seed)
            rows.append(train_decoder(model, lambda step: k_back_batch(gen, 16, length), steps, lr=lr, warmup=warm))
        curves[key] = np.stack(rows)
    return curves


def ffn_comparison(ffns, seeds, steps, lr=3e-3, length=32):
    """LLaMA-style decoders (RoPE, RMSNorm, pre-LN) that differ only in the FFN, trained on the modular sum.
    Returns (curves[ffn] = array (seeds, steps), parameters[ffn])."""
    curves, parameters = {}, {}
    for ffn in ffns:
        rows = []
        for seed in seeds:
            model = decoder(seed, max_len=length, position="rope", norm="rmsnorm", ffn=ffn)
            parameters[ffn] = sum(p.data.size for p in model.parameters())
            gen = np.random.default_rng(seed)
            rows.append(train_decoder(model, lambda step: mod_sum_batch(gen, 32, length), steps, lr=lr))
        curves[ffn] = np.stack(rows)
    return curves, parameters


def smooth(values, width=10):
    """Moving average over `width` steps (the last axis)."""
    values = np.asarray(values)
    return np.apply_along_axis(lambda v: np.convolve(v, np.ones(width) / width, mode="valid"), -1, values)


# The encoder-decoder task: read 3 to 8 digits, write them backwards, then <eos>.
PAD, BOS, EOS, N_DIGITS, MAX_DIGITS = 0, 1, 2, 10, 8


def reversal_batch(gen, batch):
    """(src, tgt_in, tgt): digits are ids 3..12, src padded with PAD; tgt = reversed digits + EOS, padded;
    tgt_in = tgt shifted right behind BOS (teacher forcing)."""
    lengths = gen.integers(3, MAX_DIGITS + 1, size=batch)
    src = np.full((batch, MAX_DIGITS), PAD)
    tgt = np.full((batch, MAX_DIGITS + 1), PAD)
    for b, n in enumerate(lengths):
        digits = gen.integers(3, 3 + N_DIGITS, size=n)
        src[b, :n], tgt[b, :n], tgt[b, n] = digits, digits[::-1], EOS
    tgt_in = np.concatenate([np.full((batch, 1), BOS), tgt[:, :-1]], axis=1)
    return src, tgt_in, tgt


def train_reverser(seed, steps, lr=3e-3, batch=32):
    """A Seq2SeqTransformer (width 32, 2 + 2 layers) trained with Adam on reversal batches drawn from `seed`.
    Returns (model in eval mode, losses)."""
    mg.manual_seed(seed)
    model = Seq2SeqTransformer(Seq2SeqConfig(src_vocab_size=3 + N_DIGITS, tgt_vocab_size=3 + N_DIGITS, d_model=32,
                                             nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                                             dim_feedforward=64))
    opt = optim.Adam(model.parameters(), lr=lr)
    gen, losses = np.random.default_rng(seed), []
    for _ in range(steps):
        src, tgt_in, tgt = reversal_batch(gen, batch)
        _, loss = model(mg.tensor(src), mg.tensor(tgt_in), mg.tensor(tgt))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), np.array(losses)


def greedy_reversals(model, src):
    """Greedy decoding of `src`, padded with PAD to (batch, MAX_DIGITS + 1)."""
    decoded = model.greedy_decode(mg.tensor(src), max_len=MAX_DIGITS + 1).data
    padded = np.full((len(src), MAX_DIGITS + 1), PAD)
    padded[:, :decoded.shape[1]] = decoded
    return padded
