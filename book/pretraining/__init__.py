"""Pretraining at toy scale (chapter 12). Import from the modules, e.g. `from book.pretraining.dedup import ...`.

| module | what it holds | paper |
|---|---|---|
| noisy_corpus | plays cut into documents, with injected junk and near-duplicates whose ground truth is known | - |
| filters | Gopher-style heuristic rules: length, symbol and digit ratios, repeated lines and n-grams | Yi (2403.04652), Gopher |
| ngram_lm | a Witten-Bell character n-gram model and the perplexity filter | Yi |
| dedup | MinHash signatures, LSH banding, exact n-gram-window deduplication | Yi |
| cascade | the stages in order, their precision and recall, filtered vs unfiltered training | Yi |
| position_prediction | MP3: keys from a random visible subset, no positions, predict each token's position | MP3 (2207.07611) |
| tera | TERA's time, frequency and magnitude alterations, the L1 on altered frames, the encoder | TERA (2007.06028) |
| scaling | parameter counts, C = 6ND, power-law and L(N, D) fits | Kaplan 2020, Hoffmann 2022 |
| sweep | the scaling sweep (`python -m book.pretraining.sweep`), resumable, its results file | - |
"""
