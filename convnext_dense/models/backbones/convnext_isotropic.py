"""Isotropic ConvNeXt (the ConvNeXt paper, section 3.3): one resolution at every depth, as a dense backbone.

A 16x16 patchify stem, then ``depth`` ConvNeXt blocks of one width at stride 16, with no downsampling: the ConvNet
twin of ViT. The module layout is the official one (facebookresearch/ConvNeXt ``models/convnext_isotropic.py``:
``stem``, ``blocks.i``), so the official ImageNet-1K files (``convnext_iso_{small,base,large}_1k_224_ema.pth``) load
as they are, through :func:`convnext_dense.checkpoint.backbone.load_pretrained`. The block, its drop path and the
LayerNorm are :mod:`.convnext`'s.

A single-scale backbone feeds a detector or UperNet through a neck that builds the pyramid, ViTDet's simple feature
pyramid (:class:`convnext_dense.models.necks.SimpleFeaturePyramid`).
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.utils.checkpoint
from mmengine.registry import MODELS
from torch import nn

from ...checkpoint.backbone import ISOTROPIC_LAYOUT, load_pretrained
from .convnext import ConvNeXtBlock, FrozenModules, LayerNorm2d, _pad_to_multiple

# The official sizes (models/convnext_isotropic.py: convnext_isotropic_{small,base,large}). Layer scale as the official
# ImageNet training (TRAINING.md): off for S and B (--layer_scale_init_value 0), main.py's default 1e-6 for L, whose
# released file therefore holds a `gamma` per block.
ARCHS: Dict[str, dict] = {
    'small': dict(depth=18, dim=384),
    'base': dict(depth=18, dim=768),
    'large': dict(depth=36, dim=1024),
}
LAYER_SCALE = {'small': 0., 'base': 0., 'large': 1e-6}
PATCH_SIZE = 16


@MODELS.register_module()
class ConvNeXtIsotropic(FrozenModules):
    """Isotropic ConvNeXt emitting the stride-16 maps of the chosen blocks, each through its own LayerNorm.

    Args:
        arch: ``small``, ``base`` or ``large`` (the official sizes, :data:`ARCHS`), or ``dict(depth=..., dim=...)``.
        in_channels: channels of the input image.
        out_indices: blocks whose outputs are returned (negative indices count from the end; default the last). Each
            is a stride-16 map of ``dim`` channels, through its own output norm ``norm{i}``. Blocks after the last
            output are not built.
        drop_path_rate: stochastic depth rate of the last block, spread linearly from 0 over all blocks.
        layer_scale_init_value: initial layer scale; ``None`` picks the official one (off for S and B and for
            dict archs, 1e-6 for L), 0 disables it.
        frozen_stages: freeze the stem and the first ``frozen_stages`` blocks (and their output norms) and keep them in
            eval mode; 0 or -1 freezes nothing.
        with_cp: activation checkpointing per block, trading compute for memory.
        pretrained: checkpoint path; shorthand for ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg: mmengine init config. ``type='Pretrained'`` loads the official ``convnext_iso_*`` files (or our
            own checkpoints) through :func:`convnext_dense.checkpoint.backbone.load_pretrained`, which reports what did
            not load. As for the hierarchical ConvNeXt, the classifier's final norm (``norm``) is not used.

    Any input size is taken: it is zero-padded bottom/right to a multiple of 16, the outputs are ``ceil(H / 16)``.
    For layer-wise learning-rate decay every block is a layer (:meth:`get_layer_depth`): the stem is layer 0, block
    ``i`` layer ``i + 1``, the output norms (with the neck and heads) layer ``depth + 1``.
    """

    arch_settings = ARCHS
    checkpoint_layout = ISOTROPIC_LAYOUT  # its state_dict keys: official isotropic checkpoints load onto them

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (-1, ),
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: Optional[float] = None,
                 frozen_stages: int = 0,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('ConvNeXtIsotropic: give either pretrained or init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        self.depth, self.dim = _resolve_arch(arch)
        if layer_scale_init_value is None:
            layer_scale_init_value = LAYER_SCALE.get(arch, 0.) if isinstance(arch, str) else 0.
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f'ConvNeXtIsotropic: drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.in_channels = in_channels
        self.out_indices = _resolve_out_indices(out_indices, self.depth)
        if not -1 <= frozen_stages <= self.depth:
            raise ValueError(f'ConvNeXtIsotropic: frozen_stages (blocks) must be in -1..{self.depth}, '
                             f'got {frozen_stages}')
        self.frozen_stages = max(frozen_stages, 0)
        self.with_cp = with_cp

        self.stem = nn.Conv2d(in_channels, self.dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)
        rates = [drop_path_rate * j / max(self.depth - 1, 1) for j in range(self.depth)]
        # Blocks after the last output are not built: they would cost compute and leave DDP with unused parameters.
        self.blocks = nn.Sequential(*[ConvNeXtBlock(self.dim, rates[j], layer_scale_init_value)
                                      for j in range(self.out_indices[-1] + 1)])
        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(self.dim, eps=1e-6))
        self._init_weights()
        self._freeze_stages()

    @property
    def out_strides(self) -> tuple:
        return (PATCH_SIZE, ) * len(self.out_indices)

    @property
    def out_channels(self) -> tuple:
        return (self.dim, ) * len(self.out_indices)

    def layer_id(self, name: str) -> int:
        """The layer of a parameter (``name`` relative to the backbone) for layer-wise learning-rate decay: the stem
        0, block ``i`` ``i + 1``, anything else (the output norms, as the neck and heads) ``depth + 1``."""
        parts = name.split('.')
        if parts[0] == 'stem':
            return 0
        if parts[0] == 'blocks':
            return int(parts[1]) + 1
        return self.depth + 1

    def get_layer_depth(self, param_name: str, prefix: str = '') -> tuple:
        """mmpretrain's layer-depth interface (``LearningRateDecayOptimWrapperConstructor``, and ours): ``(layer id,
        depth + 2)`` with the ids of :meth:`layer_id`, one layer per block, as for ViT; parameters outside ``prefix``
        count as the layer after the last block."""
        if not param_name.startswith(prefix):
            return self.depth + 1, self.depth + 2
        return self.layer_id(param_name[len(prefix):]), self.depth + 2

    def _init_weights(self):
        # Random init as in the official code (truncated normal, std .02, zero bias); Pretrained init_cfg overrides.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)

    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            load_pretrained(self, self.init_cfg['checkpoint'], map_location='cpu',
                            weights_only=self.init_cfg.get('weights_only', True))
            self._is_init = True
            return
        super().init_weights()

    def _frozen_modules(self):
        if self.frozen_stages:
            yield self.stem
        for i in range(min(self.frozen_stages, len(self.blocks))):
            yield self.blocks[i]
            if i in self.out_indices:
                yield getattr(self, f'norm{i}')

    def forward(self, x: torch.Tensor) -> tuple:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ConvNeXtIsotropic expects input of shape (N, {self.in_channels}, H, W), got '
                             f'{tuple(x.shape)}; set in_channels to match your data')
        x = self.stem(_pad_to_multiple(x, PATCH_SIZE))
        outs = []
        for i, block in enumerate(self.blocks):
            if self.with_cp and self.training and x.requires_grad:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if i in self.out_indices:
                # Contiguous NCHW: mmcv's RoIAlign reads raw NCHW memory and silently scrambles other layouts.
                outs.append(getattr(self, f'norm{i}')(x).contiguous())
        return tuple(outs)


def _resolve_arch(arch: Union[str, dict]) -> tuple:
    if isinstance(arch, str):
        if arch not in ARCHS:
            raise ValueError(f'ConvNeXtIsotropic: unknown arch {arch!r}; choose one of {", ".join(ARCHS)} '
                             'or pass dict(depth=D, dim=C)')
        arch = ARCHS[arch]
    if not isinstance(arch, dict) or set(arch) != {'depth', 'dim'}:
        raise ValueError(f'ConvNeXtIsotropic: arch must be a name or dict(depth=D, dim=C), got {arch!r}')
    depth, dim = arch['depth'], arch['dim']
    if not (isinstance(depth, int) and isinstance(dim, int) and depth >= 1 and dim >= 1):
        raise ValueError(f'ConvNeXtIsotropic: arch needs a positive integer depth and dim, got depth={depth!r}, '
                         f'dim={dim!r}')
    return depth, dim


def _resolve_out_indices(out_indices: Union[int, Sequence[int]], depth: int) -> tuple:
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    resolved = []
    for index in out_indices:
        if not isinstance(index, int) or not -depth <= index < depth:
            raise ValueError(f'ConvNeXtIsotropic: out_indices must be block indices in {-depth}..{depth - 1}, '
                             f'got {index!r} in {tuple(out_indices)}')
        resolved.append(index % depth)
    if not resolved or len(set(resolved)) != len(resolved):
        raise ValueError('ConvNeXtIsotropic: out_indices must be a non-empty list of distinct blocks, got '
                         f'{tuple(out_indices)}')
    return tuple(sorted(resolved))
