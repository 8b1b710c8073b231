"""ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators (Clark et al., 2020,
arXiv:2003.10555): replaced token detection with a small generator.

    x~      = x with [MASK] at the selected positions S (85%; 15% keep the original: no random ids)
    x^_t    = argmax_v (z_tv / tau + g_tv),  g = -log(-log u), u ~ U(0, 1)      for t in S   (Gumbel-max:
              a sample of softmax(z_t / tau), z the generator's logits on x~; no gradient flows through it)
    x_corr  = x^ on S, x elsewhere
    y_t     = 1 iff x_corr_t != x_t         (a sample equal to the original is labeled "original")
    L       = L_MLM(generator) + lambda L_D,   lambda = 50
    L_D     = mean over the non-padding tokens of BCE(sigmoid(D(x_corr)_t), y_t)

As in google-research/electra (run_pretraining.py, pretrain_helpers.py, model/modeling.py):
- The generator is a smaller BERT: hidden = round(generator_hidden_size * H) (ELECTRA-Small: 0.25), layers =
  round(generator_layers * L), intermediate = 4 * hidden, heads = max(1, hidden // 64).
- Generator and discriminator share the embeddings: word, position and token-type tables and the embedding
  LayerNorm, of width embedding_size. Each model has its own `embeddings_project` Linear when its hidden size
  differs from embedding_size.
- Generator head: LayerNorm(GELU(W h)) back to embedding_size, then logits = E (.) + b with E the shared word
  embeddings. Discriminator head: w^T GELU(W h) + b, one logit per token.
- Sampling is under stop-gradient: the sampled ids are integers computed from the logits' values, so the
  discriminator loss never reaches the generator (it does reach the shared embeddings).
Differences, deliberately: positions are chosen without replacement (mlm.draw_positions; ELECTRA samples them
with replacement and drops duplicates); L_D divides by the token count exactly (ELECTRA adds 1e-6); the generator
logits are computed at every position rather than gathered at the selected ones (same values).

Names follow transformers' ElectraForMaskedLM (generator) and ElectraForPreTraining (discriminator), so their
state_dicts load into `ElectraPretraining.generator` and `.discriminator`.
"""
from collections import namedtuple
from dataclasses import dataclass, replace

import minigrad
from minigrad import backend, nn
from minigrad.backend import np
from minigrad.nn import functional as F
from minigrad.tensor import Tensor
from book.models.bert import (BertConfig, BertEmbeddings, BertEncoder, checked_attention_mask, checked_ids,
                              init_bert_weights)
from book.objectives.mlm import IGNORE_INDEX, as_array, mlm_loss

ELECTRA_SPLIT = (0.85, 0.0, 0.15)   # MASK, RANDOM, KEEP for the generator's input (pretrain_helpers.mask)

ElectraOutput = namedtuple("ElectraOutput", ["loss", "mlm_loss", "disc_loss", "generator_logits",
                                             "discriminator_logits", "corrupted_ids", "disc_labels"])


@dataclass
class ElectraConfig:
    """Defaults: ELECTRA-Small (embedding 128, hidden 256, 12 layers, 4 heads; generator 1/4 as wide)."""
    vocab_size: int = 30522
    embedding_size: int = 128
    hidden_size: int = 256
    num_hidden_layers: int = 12
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    generator_hidden_size: float = 0.25     # fraction of hidden_size
    generator_layers: float = 1.0           # fraction of num_hidden_layers
    generator_num_attention_heads: int = None   # None: max(1, generator hidden // 64), as ELECTRA
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    mlm_weight: float = 1.0                 # ELECTRA's gen_weight
    disc_weight: float = 50.0               # lambda
    temperature: float = 1.0

    def discriminator_config(self):
        return BertConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                          num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                          intermediate_size=self.intermediate_size, hidden_dropout_prob=self.hidden_dropout_prob,
                          attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                          max_position_embeddings=self.max_position_embeddings, type_vocab_size=self.type_vocab_size,
                          initializer_range=self.initializer_range, layer_norm_eps=self.layer_norm_eps,
                          pad_token_id=self.pad_token_id, add_pooling_layer=False)

    def generator_config(self):
        hidden = int(round(self.hidden_size * self.generator_hidden_size))
        layers = int(round(self.num_hidden_layers * self.generator_layers))
        if hidden < 1 or layers < 1:
            raise ValueError(f"ElectraConfig: the generator would have hidden size {hidden} and {layers} layers "
                             f"(generator_hidden_size={self.generator_hidden_size}, "
                             f"generator_layers={self.generator_layers}); expected at least 1 of each")
        heads = self.generator_num_attention_heads or max(1, hidden // 64)
        return replace(self.discriminator_config(), hidden_size=hidden, num_hidden_layers=layers,
                       num_attention_heads=heads, intermediate_size=4 * hidden)

    def embeddings_config(self):
        """The shared embeddings' width is embedding_size (one head: BertConfig checks divisibility)."""
        return replace(self.discriminator_config(), hidden_size=self.embedding_size, num_attention_heads=1)


# ---- the two transformers -----------------------------------------------------------------------

class ElectraModel(nn.Module):
    """embeddings (shared, width E) -> embeddings_project (E -> H, only if E != H) -> BERT encoder.
    forward(input_ids, attention_mask=None, token_type_ids=None) -> hidden states (B, T, H)."""

    def __init__(self, config: BertConfig, embeddings: BertEmbeddings):
        super().__init__()
        self.embeddings = embeddings
        width = embeddings.word_embeddings.embedding_dim
        if width != config.hidden_size:
            self.embeddings_project = nn.Linear(width, config.hidden_size)
        self.encoder = BertEncoder(config)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        input_ids = checked_ids("input_ids", input_ids)
        if input_ids.ndim != 2:
            raise ValueError(f"ElectraModel: input_ids must have shape (B, T), got {input_ids.shape}")
        limit = self.embeddings.position_embeddings.num_embeddings
        if input_ids.shape[1] > limit:
            raise ValueError(f"ElectraModel: sequence length {input_ids.shape[1]} exceeds max_position_embeddings "
                             f"{limit}")
        xp = backend.array_module(input_ids.data)
        if token_type_ids is None:
            token_type_ids = Tensor(xp.zeros(input_ids.shape, dtype=minigrad.int64))
        token_type_ids = checked_ids("token_type_ids", token_type_ids, input_ids.shape)
        keep = None
        if attention_mask is not None:
            keep = checked_attention_mask(attention_mask, input_ids.shape, "ElectraModel")      # (B, T)
            keep = None if keep.all() else Tensor(keep[:, None, None, :], device=input_ids.device)
        x = self.embeddings(input_ids, token_type_ids)                           # (B, T, E)
        if "embeddings_project" in self._modules:
            x = self.embeddings_project(x)                                       # (B, T, H)
        return self.encoder(x, keep)                                             # (B, T, H)


class ElectraGeneratorPredictions(nn.Module):
    def __init__(self, config: BertConfig, embedding_size):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, embedding_size)
        self.LayerNorm = nn.LayerNorm(embedding_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))                             # (B, T, E)


class ElectraForMaskedLM(nn.Module):
    """The generator: logits (B, T, V) = LayerNorm(GELU(W h)) E^T + b, E the shared word embeddings."""

    def __init__(self, config: BertConfig, embeddings: BertEmbeddings):
        super().__init__()
        self.electra = ElectraModel(config, embeddings)
        self.generator_predictions = ElectraGeneratorPredictions(config, embeddings.word_embeddings.embedding_dim)
        self.generator_lm_head = nn.Linear(embeddings.word_embeddings.embedding_dim, config.vocab_size)
        self.generator_lm_head.weight = embeddings.word_embeddings.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        hidden = self.electra(input_ids, attention_mask, token_type_ids)         # (B, T, H_gen)
        return self.generator_lm_head(self.generator_predictions(hidden))        # (B, T, V)


class ElectraDiscriminatorPredictions(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, x):
        return self.dense_prediction(F.gelu(self.dense(x))).squeeze(-1)         # (B, T)


class ElectraForPreTraining(nn.Module):
    """The discriminator: one logit per token, > 0 meaning "replaced"."""

    def __init__(self, config: BertConfig, embeddings: BertEmbeddings):
        super().__init__()
        self.electra = ElectraModel(config, embeddings)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.discriminator_predictions(self.electra(input_ids, attention_mask, token_type_ids))


# ---- sampling and the discriminator's loss -----------------------------------------------------

def draw_gumbel_noise(shape, rng, dtype=backend.float64):
    """g = -log(-log u), u ~ U(0, 1): argmax(z + g) is then a sample of softmax(z)."""
    u = np.maximum(rng.random(shape), np.finfo(np.float64).tiny)
    return (-np.log(-np.log(u))).astype(dtype)


def gumbel_sample(logits, gumbel_noise, temperature=1.0):
    """argmax_v (z_v / temperature + g_v) over the last dimension: int64 ids of shape logits.shape[:-1].
    Computed on the values only (no graph): the stop-gradient of ELECTRA's sampling."""
    z = as_array(logits)
    g = as_array(gumbel_noise)
    if g.shape != z.shape:
        raise ValueError(f"gumbel_sample: gumbel_noise of shape {g.shape} does not match logits of shape {z.shape}")
    if not temperature > 0:
        raise ValueError(f"gumbel_sample: temperature must be positive, got {temperature}")
    xp = backend.array_module(z)
    return xp.argmax(z / temperature + xp.asarray(g, dtype=z.dtype), axis=-1).astype(np.int64)


def replaced_token_labels(original_ids, corrupted_ids, attention_mask=None):
    """y_t = 1 where the corrupted id differs from the original, else 0; 0 on padding (which the loss skips)."""
    original, corrupted = as_array(original_ids), as_array(corrupted_ids)
    if original.shape != corrupted.shape:
        raise ValueError(f"replaced_token_labels: corrupted_ids of shape {corrupted.shape} do not match "
                         f"original_ids of shape {original.shape}")
    labels = original != corrupted
    if attention_mask is not None:
        labels &= as_array(attention_mask) != 0
    return labels.astype(np.int64)


def replaced_token_detection_loss(logits, labels, attention_mask=None):
    """L_D = sum_t m_t BCE(logit_t, y_t) / sum_t m_t  (m = attention_mask: every non-padding token).
    logits (B, T) one score per token; labels (B, T) 0/1."""
    y = as_array(labels)
    if logits.shape != y.shape:
        raise ValueError(f"replaced_token_detection_loss: labels of shape {y.shape} do not match logits of shape "
                         f"{logits.shape}; expected one 0/1 label per logit")
    xp = backend.array_module(logits.data)
    m = xp.ones(y.shape, dtype=bool) if attention_mask is None else as_array(attention_mask) != 0
    if m.shape != y.shape:
        raise ValueError(f"replaced_token_detection_loss: attention_mask of shape {m.shape} does not match logits of "
                         f"shape {logits.shape}")
    count = int(m.sum())
    if count == 0:
        raise ValueError("replaced_token_detection_loss: the attention_mask has no token")
    target = Tensor(xp.asarray(y, dtype=logits.dtype))
    weight = Tensor(m.astype(logits.dtype))
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum") / count


# ---- the objective ------------------------------------------------------------------------------

class ElectraPretraining(nn.Module):
    """Generator and discriminator with shared embeddings, and the ELECTRA loss.

        draws = draw_mlm_masking(maskable, rng, vocab_size, split=ELECTRA_SPLIT)
        masked_ids, labels = apply_mlm_masking(input_ids, draws, mask_token_id)
        out = model(masked_ids, labels, draw_gumbel_noise((B, T, V), rng), attention_mask, token_type_ids)
        out.loss.backward()

    forward(masked_ids, mlm_labels, gumbel_noise, attention_mask=None, token_type_ids=None) -> ElectraOutput:
    masked_ids (B, T) the generator's input; mlm_labels (B, T) the original ids at the selected positions and
    IGNORE_INDEX elsewhere (the originals are restored from them, as ELECTRA's `unmask`); gumbel_noise (B, T, V).
    """

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.config = config
        embeddings = BertEmbeddings(config.embeddings_config())
        self.generator = ElectraForMaskedLM(config.generator_config(), embeddings)
        self.discriminator = ElectraForPreTraining(config.discriminator_config(), embeddings)
        self.apply(lambda m: init_bert_weights(m, config.initializer_range))
        embeddings.word_embeddings.weight.data[config.pad_token_id] = 0   # the tied lm head may be initialized last

    def forward(self, masked_ids, mlm_labels, gumbel_noise, attention_mask=None, token_type_ids=None):
        masked = as_array(masked_ids)
        labels = as_array(mlm_labels)
        if labels.shape != masked.shape:
            raise ValueError(f"ElectraPretraining: mlm_labels of shape {labels.shape} do not match masked_ids of "
                             f"shape {masked.shape}")
        V = self.config.vocab_size
        if as_array(gumbel_noise).shape != masked.shape + (V,):
            raise ValueError(f"ElectraPretraining: gumbel_noise of shape {as_array(gumbel_noise).shape} does not "
                             f"match (B, T, V) = {masked.shape + (V,)}")
        xp = backend.array_module(masked)
        gen_logits = self.generator(Tensor(masked), attention_mask, token_type_ids)          # (B, T, V)
        mlm = mlm_loss(gen_logits, labels)
        selected = labels != IGNORE_INDEX                                                     # (B, T)
        original = xp.where(selected, labels, masked)                                         # (B, T)
        sampled = gumbel_sample(gen_logits, gumbel_noise, self.config.temperature)            # (B, T), no grad
        corrupted = xp.where(selected, sampled, original)                                     # (B, T)
        disc_labels = replaced_token_labels(original, corrupted, attention_mask)              # (B, T)
        disc_logits = self.discriminator(Tensor(corrupted), attention_mask, token_type_ids)   # (B, T)
        disc = replaced_token_detection_loss(disc_logits, disc_labels, attention_mask)
        loss = mlm * self.config.mlm_weight + disc * self.config.disc_weight
        return ElectraOutput(loss, mlm, disc, gen_logits, disc_logits, corrupted, disc_labels)

