"""A tiny vision-transformer encoder (ViT-style, Dosovitskiy et al. 2021) for 32×32 digits.

The 1×32×32 image (the demo's input) is cut into a 4×4 grid of 8×8 patches — 16 tokens, each
covering 2×2 pixels of the original 8×8 digit —, embedded by a linear layer, given a learned
position embedding, passed through pre-LayerNorm encoder layers (multi-head self-attention
with one ``nn.Linear`` for q, k and v and one for the output projection; a GELU MLP of two
``nn.Linear``), then a final LayerNorm, mean pooling over the tokens and a linear head.

Every weight-bearing layer is an ``nn.Linear`` (rows = batch × tokens), which is what automc's
introspection, quantization and low-rank choices see; attention is written out as two
``matmul``s and a softmax (no fused kernel), so ``torch.export`` and TVM's Relax frontend take
it op by op. Defaults: d_model 64, 4 heads, MLP 128, 2 layers — 73 k parameters,
≈1.1 M MACs per image.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` (d → 3d), scaled dot-product, softmax, ``proj`` (d → d)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out)


class MLP(nn.Sequential):
    """``fc1`` (d → hidden), GELU, ``fc2`` (hidden → d)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Patch embedding, ``depth`` encoder layers, LayerNorm, mean pooling, linear classifier.

    Example:
        >>> model = TinyTransformer().eval()
        >>> model(torch.randn(2, 1, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32, patch: int = 8,
                 dim: int = 64, depth: int = 2, heads: int = 4, mlp_hidden: int = 128):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        self.patch = patch
        self.grid = image_size // patch
        self.patch_embed = nn.Linear(in_channels * patch * patch, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, dim))
        self.layers = nn.Sequential(*(EncoderLayer(dim, heads, mlp_hidden) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """N×C×H×W images → N×(H/p·W/p)×(C·p·p) patch vectors, row-major over the grid."""
        n, c, g, p = x.shape[0], x.shape[1], self.grid, self.patch
        x = x.reshape(n, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, g * g, c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.tokens(x)) + self.pos_embed
        x = self.norm(self.layers(x))
        return self.classifier(x.mean(dim=1))
