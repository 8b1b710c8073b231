"""Pretraining objectives (chapter 04): each a loss on a model's outputs, plus the functions that draw and apply
its random corruption. Every draw (positions, replacement ids, Gumbel noise, cluster samples) is a plain array
returned by a `draw_*` function from a NumPy Generator and consumed by an `apply_*` function or a forward, so a
test can pass the same draws to minigrad and to PyTorch.

| module   | objective                                                                 |
|----------|---------------------------------------------------------------------------|
| mlm      | BERT's masked language modeling (15%, 80/10/10, whole-word option)        |
| electra  | ELECTRA: generator + discriminator with shared embeddings, L_MLM + 50 L_D |
| rts      | RTS, C-RTS (cluster counts updated by the detector's errors), SLM         |
| meap     | MEAP: next-token prediction with a fraction of the inputs masked per row  |
"""
from book.objectives.electra import (ELECTRA_SPLIT, ElectraConfig, ElectraOutput,
                                         ElectraPretraining, draw_gumbel_noise, gumbel_sample,
                                         replaced_token_detection_loss, replaced_token_labels)
from book.objectives.meap import apply_meap_mask, draw_meap_mask, meap_loss
from book.objectives.mlm import (BERT_SPLIT, IGNORE_INDEX, KEEP, MASK, RANDOM, BertForMaskedLM,
                                     MaskingDraws, apply_mlm_masking, draw_mlm_masking, draw_positions,
                                     maskable_positions, mlm_loss, word_ids_from_tokens)
from book.objectives.rts import (SLM_SPLIT, BertForTokenDetection, cluster_probabilities, cluster_vocabulary,
                                     detection_labels, draw_cluster_substitution, draw_random_substitution,
                                     draw_swaps, kmeans, substitute_tokens, token_detection_loss,
                                     update_cluster_counts)

__all__ = [
    "ELECTRA_SPLIT", "ElectraConfig", "ElectraOutput", "ElectraPretraining", "draw_gumbel_noise", "gumbel_sample",
    "replaced_token_detection_loss", "replaced_token_labels",
    "apply_meap_mask", "draw_meap_mask", "meap_loss",
    "BERT_SPLIT", "IGNORE_INDEX", "KEEP", "MASK", "RANDOM", "BertForMaskedLM", "MaskingDraws", "apply_mlm_masking",
    "draw_mlm_masking", "draw_positions", "maskable_positions", "mlm_loss", "word_ids_from_tokens",
    "SLM_SPLIT", "BertForTokenDetection", "cluster_probabilities", "cluster_vocabulary", "detection_labels",
    "draw_cluster_substitution", "draw_random_substitution", "draw_swaps", "kmeans", "substitute_tokens",
    "token_detection_loss", "update_cluster_counts",
]
