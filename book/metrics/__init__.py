"""Evaluation metrics written from scratch, each tested against an established implementation.
Import from the modules: `from book.metrics.rouge import rouge_scores`."""
