"""The official isotropic ConvNeXt, rebuilt from its source as the reference of the equivalence tests.

Source: github.com/facebookresearch/ConvNeXt at commit 048efcea897d999aed302f2639b6270aedf8d4c8 (2022-07-23),
``models/convnext_isotropic.py`` (``ConvNeXtIsotropic``, ``convnext_isotropic_{small,base,large}``) and the ``Block``
and ``LayerNorm`` it imports from ``models/convnext.py``; MIT licence, Copyright (c) Meta Platforms, Inc. and
affiliates. Transcribed statement for statement, written independently of our backbone; the only changes are the
imports that would need timm, absent from the official stack: timm's ``trunc_normal_`` is torch's (the same
truncated normal), ``DropPath`` is a transcription of timm's ``drop_path`` (same Bernoulli draws, same scaling), and
``@register_model`` and the weights download of the model functions are left out.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.init import trunc_normal_


class DropPath(nn.Module):
    """timm.models.layers.DropPath (timm 0.4-0.9 ``drop_path``, scale_by_keep=True)."""

    def __init__(self, drop_prob=None):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0. or not self.training:
            return x
        keep_prob = 1 - self.drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
        if keep_prob > 0.0:
            random_tensor.div_(keep_prob)
        return x * random_tensor


class Block(nn.Module):
    """models/convnext.py ``Block``: DwConv -> Permute; LayerNorm (channels_last) -> Linear -> GELU -> Linear; Permute
    back."""

    def __init__(self, dim, drop_path=0., layer_scale_init_value=1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)  # depthwise conv
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)  # pointwise/1x1 convs, implemented with linear layers
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones((dim)),
                                  requires_grad=True) if layer_scale_init_value > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x):
        input = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = self.gamma * x
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)

        x = input + self.drop_path(x)
        return x


class LayerNorm(nn.Module):
    """models/convnext.py ``LayerNorm``: channels_last (default) or channels_first."""

    def __init__(self, normalized_shape, eps=1e-6, data_format="channels_last"):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        if self.data_format not in ["channels_last", "channels_first"]:
            raise NotImplementedError
        self.normalized_shape = (normalized_shape, )

    def forward(self, x):
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        elif self.data_format == "channels_first":
            u = x.mean(1, keepdim=True)
            s = (x - u).pow(2).mean(1, keepdim=True)
            x = (x - u) / torch.sqrt(s + self.eps)
            x = self.weight[:, None, None] * x + self.bias[:, None, None]
            return x


class ConvNeXtIsotropic(nn.Module):
    """models/convnext_isotropic.py ``ConvNeXtIsotropic`` (section 3.3 of the paper)."""

    def __init__(self, in_chans=3, num_classes=1000,
                 depth=18, dim=384, drop_path_rate=0.,
                 layer_scale_init_value=0, head_init_scale=1.,
                 ):
        super().__init__()

        self.stem = nn.Conv2d(in_chans, dim, kernel_size=16, stride=16)
        dp_rates = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = nn.Sequential(*[Block(dim=dim, drop_path=dp_rates[i],
                                            layer_scale_init_value=layer_scale_init_value)
                                      for i in range(depth)])

        self.norm = LayerNorm(dim, eps=1e-6)  # final norm layer
        self.head = nn.Linear(dim, num_classes)

        self.apply(self._init_weights)
        self.head.weight.data.mul_(head_init_scale)
        self.head.bias.data.mul_(head_init_scale)

    def _init_weights(self, m):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=.02)
            nn.init.constant_(m.bias, 0)

    def forward_features(self, x):
        x = self.stem(x)
        x = self.blocks(x)
        return self.norm(x.mean([-2, -1]))  # global average pooling, (N, C, H, W) -> (N, C)

    def forward(self, x):
        x = self.forward_features(x)
        x = self.head(x)
        return x


# The model functions' sizes. The official ImageNet training (TRAINING.md) passes --layer_scale_init_value 0 for S and
# B and keeps main.py's default 1e-6 for L: the released files were trained so.
def convnext_isotropic_small(**kwargs):
    return ConvNeXtIsotropic(depth=18, dim=384, **kwargs)


def convnext_isotropic_base(**kwargs):
    return ConvNeXtIsotropic(depth=18, dim=768, **kwargs)


def convnext_isotropic_large(**kwargs):
    return ConvNeXtIsotropic(depth=36, dim=1024, **kwargs)


OFFICIAL_MODELS = {'small': (convnext_isotropic_small, 0.), 'base': (convnext_isotropic_base, 0.),
                   'large': (convnext_isotropic_large, 1e-6)}
# The official README's table "ImageNet-1K trained models (isotropic)": parameters (millions) and release files.
OFFICIAL_PARAMS_M = {'small': 22, 'base': 87, 'large': 306}
RELEASE_FILES = {size: f'convnext_iso_{size}_1k_224_ema.pth' for size in OFFICIAL_MODELS}
