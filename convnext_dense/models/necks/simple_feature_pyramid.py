"""ViTDet's simple feature pyramid (Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection",
2022): the four strides a detector or UperNet expects, from the one stride-16 map of a plain backbone.

As in ViTDet (detectron2 ``modeling/backbone/vit.py``, ``SimpleFeaturePyramid`` with ``norm="LN"``, as its
``projects/ViTDet`` configs use it), from the last map of ``C`` channels:

- stride 4: 2x2 stride-2 deconvolution to ``C/2``, LayerNorm, GELU, 2x2 stride-2 deconvolution to ``C/4``;
- stride 8: one 2x2 stride-2 deconvolution to ``C/2``;
- stride 16: the map as it is;
- stride 32: 2x2 max-pooling (stride 2);

then, with ``out_channels`` set, per level a 1x1 and a 3x3 convolution to ``out_channels``, each followed by a
LayerNorm (no biases), and ``num_outs - 4`` more levels by max-pooling the last with kernel 1 and stride 2 (ViTDet's
``LastLevelMaxPool``, as mmdet's FPN without extra convs), the input of a Mask R-CNN's RPN and RoI heads.
With ``out_channels=None`` the levels stop after the rescaling, at ``C/4, C/2, C, C`` channels: the input of a
UperNet, whose lateral and FPN convolutions already do what the 1x1 and 3x3 ones would.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

from ..backbones.convnext import LayerNorm2d

SCALES = (4.0, 2.0, 1.0, 0.5)


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """ViTDet's simple feature pyramid: one stride-``s`` map in, one map per scale factor out (``s / factor``).

    Args:
        in_channels: channels of the backbone's map (an int, or a list holding it once per backbone output).
        out_channels: channels of every output level after its 1x1 and 3x3 convolutions; ``None`` for the rescaled
            maps themselves (``C/4, C/2, C, C`` for the default scales).
        scale_factors: any of 4, 2, 1, 0.5, each one output level, highest resolution first.
        num_outs: output levels; more than ``len(scale_factors)`` adds stride-2 max-pooled levels after the last
            (needs ``out_channels``). Default: one per scale factor.
        in_index: which backbone output to build the pyramid from (default the last).
        init_cfg: mmengine init config (by default PyTorch's initialisation, as ViTDet's).
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 out_channels: Optional[int] = 256,
                 scale_factors: Sequence[float] = SCALES,
                 num_outs: Optional[int] = None,
                 in_index: int = -1,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, int):
            if len(set(in_channels)) != 1:
                raise ValueError(f'SimpleFeaturePyramid builds the pyramid from one map: in_channels must be one '
                                 f'number, got {list(in_channels)}')
            in_channels = in_channels[0]
        unknown = [s for s in scale_factors if s not in SCALES]
        if unknown or not scale_factors or list(scale_factors) != sorted(scale_factors, reverse=True):
            raise ValueError(f'SimpleFeaturePyramid: scale_factors must be distinct values of {SCALES}, highest '
                             f'first, got {tuple(scale_factors)}')
        num_outs = len(scale_factors) if num_outs is None else num_outs
        if num_outs < len(scale_factors) or (num_outs > len(scale_factors) and out_channels is None):
            raise ValueError(f'SimpleFeaturePyramid: num_outs must be at least len(scale_factors)='
                             f'{len(scale_factors)}, and more needs out_channels; got num_outs={num_outs}, '
                             f'out_channels={out_channels}')
        if 4.0 in scale_factors and in_channels % 4 or 2.0 in scale_factors and in_channels % 2:
            raise ValueError(f'SimpleFeaturePyramid: in_channels={in_channels} must divide by 4 (by 2) for scale '
                             'factor 4 (2)')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factors = tuple(float(s) for s in scale_factors)
        self.num_outs = num_outs
        self.in_index = in_index
        self.levels = nn.ModuleList()
        self.level_channels = []  # channels of each level before its convolutions
        for scale in self.scale_factors:
            layers, channels = _rescale(in_channels, scale)
            if out_channels is not None:
                layers += [nn.Conv2d(channels, out_channels, kernel_size=1, bias=False),
                           LayerNorm2d(out_channels, eps=1e-6),
                           nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
                           LayerNorm2d(out_channels, eps=1e-6)]
            self.levels.append(nn.Sequential(*layers))
            self.level_channels.append(channels)

    @property
    def channels(self) -> Tuple[int, ...]:
        """Channels of each output level."""
        if self.out_channels is None:
            return tuple(self.level_channels)
        return (self.out_channels, ) * self.num_outs

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> tuple:
        x = inputs if isinstance(inputs, torch.Tensor) else inputs[self.in_index]
        outs = [level(x) for level in self.levels]
        for _ in range(self.num_outs - len(outs)):
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)


def _rescale(channels: int, scale: float) -> Tuple[list, int]:
    """ViTDet's layers for one scale factor and the channels they give."""
    if scale == 4.0:
        return [nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2),
                LayerNorm2d(channels // 2, eps=1e-6), nn.GELU(),
                nn.ConvTranspose2d(channels // 2, channels // 4, kernel_size=2, stride=2)], channels // 4
    if scale == 2.0:
        return [nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2)], channels // 2
    if scale == 1.0:
        return [], channels
    # ceil_mode: a map of odd size gives ceil(H / 2), as the backbones' strides do
    return [nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)], channels
