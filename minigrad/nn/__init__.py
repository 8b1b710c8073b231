"""Neural-network building blocks with torch.nn's names: Module, Parameter, layers, init, functional.

    import minigrad.nn as nn
    import minigrad.nn.functional as F
"""
from minigrad.nn import functional, init, positional, utils  # noqa: F401
from minigrad.nn.activation import (CELU, ELU, GELU, SELU, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU,
                                   LogSigmoid, Mish, ReLU, ReLU6, SiLU, Sigmoid, Softmax, Softmin, Softsign, Tanh)
from minigrad.nn.containers import ModuleDict, ModuleList, Sequential
from minigrad.nn.layers import Dropout, Embedding, Identity, Linear
from minigrad.nn.module import Module
from minigrad.nn.multihead_attention import MultiheadAttention
from minigrad.nn.normalization import BatchNorm1d, GroupNorm, InstanceNorm1d, InstanceNorm2d, LayerNorm, RMSNorm
from minigrad.nn.positional import LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEmbedding
from minigrad.nn.rnn import GRU, LSTM, GRUCell, LSTMCell
from minigrad.nn.transformer import (FeedForward, SwiGLU, Transformer, TransformerDecoder, TransformerDecoderLayer,
                                     TransformerEncoder, TransformerEncoderLayer)
from minigrad.tensor import Parameter

__all__ = ["CELU", "ELU", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU", "LogSigmoid", "Mish", "ReLU6",
           "SELU", "Softmin", "Softsign",
           "BatchNorm1d", "Dropout", "Embedding", "FeedForward", "GELU", "GRU", "GRUCell", "GroupNorm", "Identity",
           "InstanceNorm1d", "InstanceNorm2d", "LSTM", "LSTMCell", "LayerNorm", "LearnedPositionalEmbedding", "Linear",
           "Module", "ModuleDict", "ModuleList",
           "MultiheadAttention", "Parameter", "RMSNorm", "ReLU", "RotaryEmbedding", "Sequential", "SiLU", "Sigmoid",
           "SinusoidalPositionalEmbedding", "Softmax", "SwiGLU", "Tanh", "Transformer", "TransformerDecoder",
           "TransformerDecoderLayer", "TransformerEncoder", "TransformerEncoderLayer",
           "functional", "init", "positional", "utils"]
