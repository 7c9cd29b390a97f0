"""fastconv.nn: modules and layers with torch.nn's names, parameters and state-dict keys.

Layers compute only through ``fastconv.functional`` (which dispatches to the
kernels), so the same model runs on every backend.
"""
from . import init, utils
from .activation import GELU, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention, SelfAttention2d, SpatialAttention, SqueezeExcitation
from .conv import Conv1d, Conv2d
from .dropout import Dropout
from .linear import Flatten, Identity, Linear, Unflatten
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, MSELoss
from .container import ModuleDict, ModuleList, Sequential
from .module import IncompatibleKeys, Module, Parameter, StateDictError
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .pool import AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from .rnn import GRU, LSTM, GRUCell, LSTMCell

__all__ = [
    "init", "utils", "Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "IncompatibleKeys",
    "StateDictError", "Conv1d", "Conv2d", "Linear", "Identity", "Flatten", "Unflatten",
    "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Dropout",
    "ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax",
    "LSTM", "GRU", "LSTMCell", "GRUCell",
    "MultiheadAttention", "SqueezeExcitation", "SpatialAttention", "SelfAttention2d",
    "CrossEntropyLoss", "MSELoss", "HuberLoss", "BCEWithLogitsLoss",
]
