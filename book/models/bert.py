"""BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding (Devlin et al., 2019,
arXiv:1810.04805): the encoder, in minigrad, with Hugging Face BertModel's parameter names.

    x = LayerNorm(word(ids) + token_type(types) + position(0..T-1))      # (B, T, C)
    for each layer:  x = LayerNorm(x + attn(x));  x = LayerNorm(x + FFN(x))      (post-LN)
    FFN(x) = W_2 GELU(W_1 x + b_1) + b_2          (exact GELU: x * Phi(x), Phi the normal CDF)
    pooler_output = tanh(W_p x[:, 0] + b_p)        (the [CLS] vector, for next-sentence prediction)

Self-attention is bidirectional: softmax(Q K^T / sqrt(d) + M) V, where M is -inf on the keys that are
padding (attention_mask 0) and 0 elsewhere; no causal mask.

Names follow `transformers.BertModel` (embeddings.word_embeddings.weight,
encoder.layer.0.attention.self.query.weight, ...), so its state_dict and its safetensors files load
directly; `load_pretrained(folder)` reads a Hugging Face folder (config.json + model.safetensors).
`sentence_embeddings` is the sentence-transformers recipe: mean over the tokens, then L2-normalize.
"""
import json
from collections import namedtuple
from dataclasses import dataclass, fields
from pathlib import Path

from safetensors.numpy import load_file

import minigrad
from minigrad import backend, nn
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.tensor import Tensor

BertModelOutput = namedtuple("BertModelOutput", ["last_hidden_state", "pooler_output"])


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    add_pooling_layer: bool = True

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"BertConfig: hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act != "gelu":
            raise ValueError(f"BertConfig: hidden_act {self.hidden_act!r} is not supported; expected 'gelu' "
                             f"(the exact, erf-based GELU)")

    @classmethod
    def from_dict(cls, config):
        """From a Hugging Face config.json dict; keys that do not change the encoder's computation are ignored."""
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"BertConfig: position_embedding_type {config['position_embedding_type']!r} is not "
                             f"supported; expected 'absolute'")
        if config.get("is_decoder", False):
            raise ValueError("BertConfig: is_decoder=True (a causal BERT) is not supported; expected an encoder")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        T = input_ids.shape[1]
        positions = minigrad.arange(T, device=input_ids.device)                  # (T,)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + self.position_embeddings(positions)                               # (B, T, C)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x, keep):
        """x (B, T, C); keep (B, 1, 1, T) bool, True on the keys that are tokens (None: no padding)."""
        B, T, C = x.shape
        H, D = self.num_heads, C // self.num_heads
        q = self.query(x).reshape(B, T, H, D).transpose(1, 2)                    # (B, H, T, D)
        k = self.key(x).reshape(B, T, H, D).transpose(1, 2)                      # (B, H, T, D)
        v = self.value(x).reshape(B, T, H, D).transpose(1, 2)                    # (B, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                           dropout_p=self.dropout_p if self.training else 0.0)  # (B, H, T, D)
        return y.transpose(1, 2).reshape(B, T, C)                                # (B, T, C)


class BertSelfOutput(nn.Module):
    """The attention's output projection, then the residual and LayerNorm (post-LN)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x, keep):
        return self.output(self.self(x, keep), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = nn.GELU()  # exact: x * Phi(x)

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))                          # (B, T, intermediate)


class BertOutput(nn.Module):
    """The FFN's second projection, then the residual and LayerNorm (post-LN)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x, keep):
        x = self.attention(x, keep)                                              # (B, T, C)
        return self.output(self.intermediate(x), x)                              # (B, T, C)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x, keep):
        for layer in self.layer:
            x = layer(x, keep)
        return x


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x):
        return self.dense(x[:, 0]).tanh()                                        # (B, C), from [CLS]


def init_bert_weights(module, std):
    """BERT's initialization of one module: N(0, std) for Linear and Embedding weights, zero biases, the
    padding row at zero (LayerNorms keep their ones and zeros). model.apply(lambda m: init_bert_weights(m, std))."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        init.normal_(module.weight, 0.0, std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        module.weight.data[module.padding_idx] = 0


class BertModel(nn.Module):
    """forward(input_ids (B, T), attention_mask (B, T) 1 = token / 0 = padding, token_type_ids (B, T))
    -> BertModelOutput(last_hidden_state (B, T, C), pooler_output (B, C) or None without a pooler).

    Weights start as in BERT: N(0, initializer_range) for Linear and Embedding weights, zero biases,
    LayerNorm at (1, 0), the padding token's embedding at zero.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if config.add_pooling_layer else None
        self.apply(lambda module: init_bert_weights(module, config.initializer_range))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        input_ids = checked_ids("input_ids", input_ids)
        if input_ids.ndim != 2:
            raise ValueError(f"BertModel: input_ids must have shape (B, T), got {input_ids.shape}")
        B, T = input_ids.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"BertModel: sequence length {T} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        if token_type_ids is None:
            token_type_ids = Tensor(backend.array_module(input_ids.data).zeros((B, T), dtype=minigrad.int64))
        token_type_ids = checked_ids("token_type_ids", token_type_ids, input_ids.shape)
        keep = None if attention_mask is None else checked_attention_mask(attention_mask, input_ids.shape)  # (B, T)
        if keep is not None and keep.all():
            keep = None                                                          # no padding: no mask needed
        if keep is not None:
            keep = Tensor(keep[:, None, None, :], device=input_ids.device)        # (B, 1, 1, T)
        x = self.embeddings(input_ids, token_type_ids)                           # (B, T, C)
        x = self.encoder(x, keep)                                                # (B, T, C)
        return BertModelOutput(x, None if self.pooler is None else self.pooler(x))


def checked_ids(name, ids, shape=None):
    """An integer Tensor of token ids (from a Tensor, an array or nested lists), of `shape` if given."""
    ids = ids if isinstance(ids, Tensor) else minigrad.tensor(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"BertModel: {name} must hold integers, got dtype {ids.dtype}")
    if shape is not None and ids.shape != shape:
        raise ValueError(f"BertModel: {name} of shape {ids.shape} does not match input_ids of shape {shape}")
    return ids


def checked_attention_mask(mask, shape, op="BertModel"):
    """The (B, T) 0/1 mask as a bool array, checked: the shape of the ids, values 0 or 1, a token per row."""
    mask = mask.data if isinstance(mask, Tensor) else minigrad.tensor(mask).data
    if mask.shape != shape:
        raise ValueError(f"{op}: attention_mask of shape {mask.shape} does not match the input of shape {shape}; "
                         f"expected (B, T) with 1 = token, 0 = padding")
    keep = mask != 0
    if mask.size and not (keep == (mask == 1)).all():
        raise ValueError(f"{op}: attention_mask must hold only 0 (padding) and 1 (token)")
    empty = (~keep.any(axis=-1)).nonzero()[0]
    if shape[-1] and empty.size:
        raise ValueError(f"{op}: attention_mask rows {empty.tolist()} have no token; every sequence needs at least "
                         f"one (the tokenizer always adds [CLS] and [SEP])")
    return keep


# ---- pretrained weights -----------------------------------------------------------------------

def hf_state_dict(tensors):
    """A Hugging Face BERT checkpoint's tensors with BertModel's names.

    - `bert.` prefixes are removed (checkpoints of BertForMaskedLM and friends); keys of their heads
      (`cls.`, `classifier.`, ...) are dropped;
    - old TensorFlow-converted names LayerNorm.gamma / LayerNorm.beta become weight / bias;
    - `embeddings.position_ids`, a buffer holding 0..max_len-1 that older transformers saved, is checked
      and dropped (positions are computed with arange).
    """
    prefixed = any(k.startswith("bert.") for k in tensors)
    out = {}
    for key, value in tensors.items():
        if prefixed:
            if not key.startswith("bert."):
                continue
            key = key[len("bert."):]
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if key == "embeddings.position_ids":
            flat = value.reshape(-1)
            if flat.tolist() != list(range(flat.shape[0])):
                raise ValueError("hf_state_dict: embeddings.position_ids is not 0, 1, 2, ...: custom positions "
                                 "are not supported")
            continue
        out[key] = value
    return out


def load_pretrained(folder):
    """A BertModel (in eval mode, float32) from a Hugging Face folder: config.json and model.safetensors.

    The pooler is built only if the file has its weights (sentence-embedding models may not).
    """
    folder = Path(folder)
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"load_pretrained: {folder} has no {name}")
    config = json.loads((folder / "config.json").read_text())
    state = hf_state_dict(load_file(folder / "model.safetensors"))
    config["add_pooling_layer"] = "pooler.dense.weight" in state
    model = BertModel(BertConfig.from_dict(config))
    model.load_state_dict(state)
    return model.eval()


# ---- sentence embeddings ----------------------------------------------------------------------

def mean_pooling(last_hidden_state, attention_mask):
    """The average of the token vectors, padding excluded:  sum_t m_t h_t / sum_t m_t  (a token per row)."""
    B, T = last_hidden_state.shape[:2]
    keep = checked_attention_mask(attention_mask, (B, T), "mean_pooling")
    m = Tensor(keep[:, :, None].astype(last_hidden_state.dtype), device=last_hidden_state.device)  # (B, T, 1)
    summed = (last_hidden_state * m).sum(dim=1)                                   # (B, C)
    return summed / m.sum(dim=1)                                                  # (B, C)


def sentence_embeddings(model, input_ids, attention_mask, token_type_ids=None):
    """Sentence vectors as sentence-transformers computes them (modules.json: Transformer, Pooling
    with mean tokens, Normalize): normalize(mean_pooling(last_hidden_state, mask)), shape (B, C), unit length."""
    hidden = model(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, C)
    return F.normalize(mean_pooling(hidden, attention_mask), p=2.0, dim=-1)      # (B, C)
