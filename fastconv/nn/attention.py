"""Attention layers: MultiheadAttention (torch's parameter names), squeeze-and-excitation channel
attention, CBAM-style spatial attention and self-attention over feature maps."""
import math

import numpy as np

from .. import functional as F
from ..ops import cat
from ..tensor import Tensor
from . import init
from .activation import ReLU, Sigmoid
from .conv import Conv2d
from .linear import Linear
from .module import Module, Parameter
from .pool import AdaptiveAvgPool2d


def _additive_mask(mask, dtype, xp, what):
    """torch.nn.MultiheadAttention masks: bool True = masked out, float = added to the scores."""
    m = mask.data if isinstance(mask, Tensor) else xp.asarray(mask)
    if m.dtype == bool:
        return xp.where(m, xp.asarray(-np.inf, dtype=dtype), xp.asarray(0, dtype=dtype))
    if m.dtype.kind != "f":
        raise TypeError(f"MultiheadAttention: {what} must be bool or floating, got {m.dtype}")
    return m.astype(dtype, copy=False)


class MultiheadAttention(Module):
    """Multi-head attention, torch.nn.MultiheadAttention's interface and state-dict keys.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None)``.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, dtype=np.float32):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of "
                             f"num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise ValueError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout, self.batch_first = float(dropout), batch_first
        e = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.empty((3 * e, e), dtype=dtype))
            for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(n, None)
        else:
            self.q_proj_weight = Parameter(np.empty((e, e), dtype=dtype))
            self.k_proj_weight = Parameter(np.empty((e, self.kdim), dtype=dtype))
            self.v_proj_weight = Parameter(np.empty((e, self.vdim), dtype=dtype))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * e, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for p in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(p)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _projections(self):
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            ws = (w[0:e], w[e:2 * e], w[2 * e:])
        else:
            ws = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        b = self.in_proj_bias
        bs = (None, None, None) if b is None else (b[0:e], b[e:2 * e], b[2 * e:])
        return ws, bs

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        for n, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"MultiheadAttention: {n} must be a fastconv.Tensor, got {type(t).__name__}")
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = (t.reshape(t.shape[0], 1, t.shape[1]) for t in (query, key, value))
            if key_padding_mask is not None:
                kpm = key_padding_mask.data if isinstance(key_padding_mask, Tensor) else key_padding_mask
                key_padding_mask = kpm.reshape(1, -1)
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        if query.ndim != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiheadAttention: query must end in embed_dim={self.embed_dim}, got {query.shape}")
        L, N, E = query.shape
        S = key.shape[0]
        if key.shape[:2] != (S, N) or value.shape[:2] != (S, N):
            raise ValueError(f"MultiheadAttention: key/value shapes {key.shape}, {value.shape} do not match "
                             f"query {query.shape}")
        (wq, wk, wv), (bq, bk, bv) = self._projections()
        h, d = self.num_heads, self.head_dim

        def heads(t, length):  # (len, N, E) -> (N, h, len, d)
            return t.reshape(length, N, h, d).permute(1, 2, 0, 3)

        q = heads(F.linear(query, wq, bq), L)
        k = heads(F.linear(key, wk, bk), S)
        v = heads(F.linear(value, wv, bv), S)
        xp, dtype = query.xp, query.dtype
        mask = None
        if attn_mask is not None:
            m = _additive_mask(attn_mask, dtype, xp, "attn_mask")
            if m.ndim == 3:
                if m.shape != (N * h, L, S):
                    raise ValueError(f"MultiheadAttention: 3-D attn_mask must be {(N * h, L, S)}, got {m.shape}")
                m = m.reshape(N, h, L, S)
            elif m.shape != (L, S):
                raise ValueError(f"MultiheadAttention: 2-D attn_mask must be {(L, S)}, got {m.shape}")
            mask = m
        elif is_causal:
            mask = xp.triu(xp.full((L, S), -np.inf, dtype=dtype), 1)
        if key_padding_mask is not None:
            kp = _additive_mask(key_padding_mask, dtype, xp, "key_padding_mask")
            if kp.shape != (N, S):
                raise ValueError(f"MultiheadAttention: key_padding_mask must be {(N, S)}, got {kp.shape}")
            kp = kp.reshape(N, 1, 1, S)
            mask = kp if mask is None else mask + kp
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
            if mask is not None:
                scores = scores + Tensor(mask)
            weights = F.softmax(scores, dim=-1)
            attn = weights
            if p > 0:
                attn = F.dropout(attn, p, True, seed=int(init.get_generator().integers(0, 2 ** 31 - 1)))
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else Tensor(mask),
                                                 dropout_p=p)
        out = out.permute(2, 0, 1, 3).reshape(L, N, E)
        out = self.out_proj(out)
        if unbatched:
            out = out.reshape(L, E)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if unbatched:
                weights = weights.reshape(weights.shape[1:])
        return out, weights


class SqueezeExcitation(Module):
    """Channel attention (Hu et al.), torchvision.ops.SqueezeExcitation's layout: x * sigmoid(fc2(relu(fc1(gap(x)))))."""

    def __init__(self, input_channels, squeeze_channels=None, reduction=16, activation=ReLU,
                 scale_activation=Sigmoid):
        super().__init__()
        if squeeze_channels is None:
            squeeze_channels = max(1, input_channels // reduction)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc1 = Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * s


class SpatialAttention(Module):
    """CBAM spatial attention: x * sigmoid(conv_k×k([mean_c(x), max_c(x)]))."""

    def __init__(self, kernel_size=7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"SpatialAttention: kernel_size must be odd, got {kernel_size}")
        self.conv = Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        desc = cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True)], dim=1)
        return x * F.sigmoid(self.conv(desc))


class SelfAttention2d(Module):
    """Self-attention over the H*W positions of a feature map (SAGAN): x + gamma * attention(x)."""

    def __init__(self, channels, reduction=8):
        super().__init__()
        inner = max(1, channels // reduction)
        self.query = Conv2d(channels, inner, 1)
        self.key = Conv2d(channels, inner, 1)
        self.value = Conv2d(channels, channels, 1)
        self.gamma = Parameter(np.zeros(1, dtype=np.float32))

    def forward(self, x):
        n, c, hh, ww = x.shape
        q = self.query(x).reshape(n, -1, hh * ww).transpose(1, 2)  # (N, HW, C')
        k = self.key(x).reshape(n, -1, hh * ww).transpose(1, 2)
        v = self.value(x).reshape(n, c, hh * ww).transpose(1, 2)    # (N, HW, C)
        a = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return x + self.gamma * a.transpose(1, 2).reshape(n, c, hh, ww)
