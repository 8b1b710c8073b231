"""The book's library: everything the chapters build on the minigrad engine.

minigrad/ is the autograd engine and nothing else; this package holds what the chapters add on top of it, by topic:

| module | what it holds |
|---|---|
| `models/` | GPT, BERT (Hugging Face names), decoder LM, seq2seq, Pointer Network, LAMA, classifiers, TransNormer LM, SoftplusLM |
| `efficient_attention/` | the paper modules of chapter 07: Routing, TransNormer, BASED, LSSA, DiffQKV |
| `objectives/` | pretraining objectives: MLM, ELECTRA, RTS / C-RTS / SLM, MEAP |
| `tokenizers/` | byte-level BPE and WordPiece, from scratch |
| `data/` | corpora (Shakespeare by play) and generated tasks (MQAR, needles, pointer tasks, ...) |
| `training`, `generation` | the training loop with exact resume; sampling and the KV cache |
| `experiments/` | experiment harnesses the notebooks call |
| `testing`, `torch_reference` | the one helper that checks any function against PyTorch; torch twins |
| `runner`, `exercises`, `env` | the book runner (`python -m book`), the exercise harness, the environment report |

Layers: kernels/ < minigrad/ < book/ < chapters/, exercises/, tests/ (tests/test_repo_policy.py enforces them).
The papers and where each one lives: PAPERS.md.
"""
