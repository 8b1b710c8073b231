"""Neural-network building blocks with torch.nn's names: Module, Parameter, layers, init, functional.

    import minigrad.nn as nn
    import minigrad.nn.functional as F
"""
from minigrad.nn import functional, init, utils  # noqa: F401
from minigrad.nn.activation import GELU, ReLU, SiLU, Sigmoid, Softmax, Tanh
from minigrad.nn.containers import ModuleDict, ModuleList, Sequential
from minigrad.nn.layers import Dropout, Embedding, Identity, Linear
from minigrad.nn.module import Module
from minigrad.nn.multihead_attention import MultiheadAttention
from minigrad.nn.normalization import BatchNorm1d, LayerNorm, RMSNorm
from minigrad.nn.rnn import GRU, LSTM, GRUCell, LSTMCell
from minigrad.tensor import Parameter

__all__ = ["BatchNorm1d", "Dropout", "Embedding", "GELU", "GRU", "GRUCell", "Identity", "LSTM", "LSTMCell",
           "LayerNorm", "Linear", "Module", "ModuleDict", "ModuleList", "MultiheadAttention", "Parameter", "RMSNorm", "ReLU", "Sequential",
           "SiLU", "Sigmoid", "Softmax", "Tanh", "functional", "init", "utils"]
