"""The encoder-decoder model (book/models/seq2seq.py) against a torch twin on torch.nn.Transformer.

The twin is written here with the same parameter names; torch's state_dict loads into the minigrad model.
Logits, loss and every parameter gradient must agree (float64 tightly, float32 realistically), with padded
sources and targets, post-LN and pre-LN; greedy decoding must produce the same tokens as the twin's.
"""
import math

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as tF

import minigrad as mg
from minigrad.backend import np
from book.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from book.testing import TOLERANCES, assert_close

pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")

PAD, BOS, EOS = 0, 1, 2


class TorchSeq2Seq(tnn.Module):
    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.c = c
        self.src_embed = tnn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = tnn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.transformer = tnn.Transformer(c.d_model, c.nhead, c.num_encoder_layers, c.num_decoder_layers,
                                           c.dim_feedforward, c.dropout, c.activation, batch_first=True,
                                           norm_first=c.norm_first)
        self.head = tnn.Linear(c.d_model, c.tgt_vocab_size)

    def embed(self, embedding, ids):
        T, d = ids.shape[1], self.c.d_model
        pe = torch.zeros(T, d, dtype=torch.float64)   # the PyTorch tutorial's PositionalEncoding
        position = torch.arange(T, dtype=torch.float64)[:, None]
        div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(position * div), torch.cos(position * div)
        x = embedding(ids) * math.sqrt(d)
        return x + pe.to(x.dtype)

    def forward(self, src, tgt_in):
        causal = torch.ones(tgt_in.shape[1], tgt_in.shape[1], dtype=torch.bool).triu(1)  # True = may not look
        h = self.transformer(self.embed(self.src_embed, src), self.embed(self.tgt_embed, tgt_in),
                             tgt_mask=causal, src_key_padding_mask=src == PAD,
                             tgt_key_padding_mask=tgt_in == PAD, memory_key_padding_mask=src == PAD)
        return self.head(h)

    def greedy(self, src, max_len):
        out = torch.full((src.shape[0], 1), BOS)
        done = torch.zeros(src.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            nxt = self(src, out)[:, -1].argmax(-1).masked_fill(done, PAD)
            out = torch.cat([out, nxt[:, None]], 1)
            done |= nxt == EOS
            if done.all():
                break
        return out[:, 1:]


def _config(**options):
    return Seq2SeqConfig(**{**dict(src_vocab_size=11, tgt_vocab_size=9, d_model=12, nhead=3, num_encoder_layers=2,
                                   num_decoder_layers=2, dim_feedforward=10), **options})


def _twins(config, dtype):
    torch.manual_seed(0)
    ref = TorchSeq2Seq(config).double()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else 0.1 * torch.randn_like(p))
    ours = Seq2SeqTransformer(config).to(np.dtype(dtype))
    ours.load_state_dict(ref.state_dict())
    return ours, ref.to(getattr(torch, dtype))


def _batch():
    """3 sources of lengths 7, 5, 3 and targets of lengths 6, 4, 6 (then padding)."""
    rng = np.random.default_rng(0)
    src = rng.integers(3, 11, size=(3, 7))
    src[1, 5:], src[2, 3:] = PAD, PAD
    tgt = rng.integers(3, 9, size=(3, 6))
    tgt[1, 4:] = PAD
    tgt_in = np.concatenate([np.full((3, 1), BOS), tgt[:, :-1]], axis=1)
    return src, tgt_in, tgt


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seq2seq_matches_torch_twin(norm_first, dtype):
    ours, ref = _twins(_config(norm_first=norm_first), dtype)
    names = [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == names
    src, tgt_in, tgt = _batch()
    logits, loss = ours(mg.tensor(src), mg.tensor(tgt_in), mg.tensor(tgt))
    t_logits = ref(torch.from_numpy(src), torch.from_numpy(tgt_in))
    t_loss = tF.cross_entropy(t_logits.reshape(-1, t_logits.shape[-1]), torch.from_numpy(tgt).reshape(-1),
                              ignore_index=PAD)
    tol = TOLERANCES[dtype]
    assert_close(f"[{dtype}] logits", logits.data, t_logits.detach().numpy(), **tol)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)
    loss.backward()
    t_loss.backward()
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert p.grad is not None and p.grad.dtype == p.dtype and p.grad.shape == p.shape, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, tp.grad.numpy(), **tol)


def test_greedy_decoding_matches_torch_twin():
    ours, ref = _twins(_config(), "float64")
    src, _, _ = _batch()
    with torch.no_grad():
        want = ref.eval().greedy(torch.from_numpy(src), max_len=8).numpy()
    got = ours.eval().greedy_decode(mg.tensor(src), max_len=8)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.data, want)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_cross_attention_weights_match_torch_twin(norm_first):
    """The twin's last decoder layer, run by hand in torch up to its cross-attention with need_weights=True."""
    ours, ref = _twins(_config(norm_first=norm_first), "float64")
    src, tgt_in, _ = _batch()
    s, t = torch.from_numpy(src), torch.from_numpy(tgt_in)
    with torch.no_grad():
        memory = ref.transformer.encoder(ref.embed(ref.src_embed, s), src_key_padding_mask=s == PAD)
        causal = torch.ones(t.shape[1], t.shape[1], dtype=torch.bool).triu(1)
        x = ref.embed(ref.tgt_embed, t)
        *lower, last = ref.transformer.decoder.layers
        for layer in lower:
            x = layer(x, memory, tgt_mask=causal, tgt_key_padding_mask=t == PAD, memory_key_padding_mask=s == PAD)
        if norm_first:
            x = x + last.self_attn(*[last.norm1(x)] * 3, attn_mask=causal, key_padding_mask=t == PAD)[0]
            query = last.norm2(x)
        else:
            query = last.norm1(x + last.self_attn(x, x, x, attn_mask=causal, key_padding_mask=t == PAD)[0])
        want = last.multihead_attn(query, memory, memory, key_padding_mask=s == PAD)[1]
    got = ours.cross_attention_weights(mg.tensor(src), mg.tensor(tgt_in))
    assert got.shape == (3, 6, 7) and not got.requires_grad
    assert_close("cross-attention weights", got.data, want.numpy(), **TOLERANCES["float64"])
    np.testing.assert_array_equal(got.data[2, :, 3:], 0)          # padded source positions get no weight


def test_greedy_decoding_stops_at_eos_and_pads_after_it():
    model = Seq2SeqTransformer(_config())
    with mg.no_grad():
        model.head.bias.data[:] = -1e3
        model.head.bias.data[EOS] = 1e3          # the first token is eos for every sequence
    out = model.greedy_decode(mg.tensor(np.array([[3, 4, 5], [6, 7, PAD]])), max_len=5)
    np.testing.assert_array_equal(out.data, [[EOS], [EOS]])


def test_bad_input_is_explained():
    model = Seq2SeqTransformer(_config())
    with pytest.raises(ValueError, match="same B"):
        model(mg.tensor(np.ones((2, 3), np.int64)), mg.tensor(np.ones((3, 3), np.int64)))
    with pytest.raises(ValueError, match=r"src token ids of shape \(B, S\)"):
        model.encode(mg.tensor(np.ones(3, np.int64)))
