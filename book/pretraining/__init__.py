"""Pretraining at toy scale (chapter 12): the data pipeline (heuristic filters, a perplexity filter, MinHash and LSH
near-duplicate detection), position prediction (MP3), TERA's alterations on spectrograms, and a scaling sweep.
Import from the modules: `from book.pretraining.minhash import ...`."""
