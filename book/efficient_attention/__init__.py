"""Efficient-attention modules of chapter 07, built on the fast attention ops of minigrad.nn (kernels/ inside).

| module | classes and functions | paper |
|---|---|---|
| routing | RoutingAttention, routing_attention, route | Routing Transformer (Roy, 2020) |
| transnormer | TransNormerBlock, TransNormerAttention, LRPE, SGLU, SimpleRMSNorm | TransNormerLLM (Qin, 2023) |
| based | BasedMixer, BasedLinearAttention, SlidingWindowAttention, BaseConv, ShortConvolution | BASED (Arora, 2024) |
| softplus | SoftplusSelfAttention | LSSA / LSSAR (Gao & Spratling, 2025) |
| diffqkv | DiffQKVAttention, kv_cache_size | Sigma's DiffQKV (Lin, 2025) |
| recall | MQARModel, train_mqar, RecallModel, train_recall, CHAPTER_METHODS | the chapter's recall experiments |

The attention inside is minigrad.nn's: lightning_attention, linear_attention (Taylor map), sliding_window_attention,
softplus_attention, flash_attention (grouped heads); routing gathers its clusters and uses the masked softmax.
Every module is checked against a PyTorch twin (tests/test_efficient_attention_*.py): outputs and all gradients.
"""
from book.efficient_attention.based import (BaseConv, BasedLinearAttention, BasedMixer, ShortConvolution,
                                                   SlidingWindowAttention)
from book.efficient_attention.diffqkv import DiffQKVAttention, kv_cache_size
from book.efficient_attention.routing import RoutingAttention, route, routing_attention
from book.efficient_attention.softplus import SoftplusSelfAttention
from book.efficient_attention.transnormer import (LRPE, SGLU, SimpleRMSNorm, TransNormerAttention,
                                                         TransNormerBlock)

__all__ = ["BaseConv", "BasedLinearAttention", "BasedMixer", "DiffQKVAttention", "LRPE", "RoutingAttention", "SGLU",
           "ShortConvolution", "SimpleRMSNorm", "SlidingWindowAttention", "SoftplusSelfAttention",
           "TransNormerAttention", "TransNormerBlock", "kv_cache_size", "route", "routing_attention"]
