"""Modules, layers and losses whose backward passes are written by hand.

Every module's ``backward(grad_output)`` returns dL/d(input) and accumulates parameter
gradients into ``param.grad``; the formulas live in ``handgrad.nn.functional``.
"""

from handgrad.nn.activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from handgrad.nn.dropout import Dropout
from handgrad.nn.linear import Flatten, Linear
from handgrad.nn.loss import CrossEntropyLoss, Loss, MSELoss, NLLLoss, SumSquaredLoss
from handgrad.nn.mlp import mlp, parse_sizes
from handgrad.nn.module import Module, Sequential
from handgrad.nn.normalization import BatchNorm1d, LayerNorm

__all__ = [
    "GELU",
    "BatchNorm1d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "Loss",
    "MSELoss",
    "Module",
    "NLLLoss",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SumSquaredLoss",
    "Tanh",
    "mlp",
    "parse_sizes",
]
