"""ConvNeXt V1/V2 backbone for dense prediction.

The module layout follows the official ConvNeXt code (``downsample_layers.i``, ``stages.i.j``, ``norm{i}``), so official
detection checkpoints load as they are and the official layer-decay recipes apply name for name. Checkpoints in the
mmpretrain and timm layouts are mapped onto it by :mod:`convnext_dense.checkpoint.backbone`.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

from ...checkpoint.backbone import OFFICIAL_LAYOUT, load_pretrained

ARCHS: Dict[str, Dict[str, tuple]] = {
    'atto': dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)),
    'femto': dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384)),
    'pico': dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512)),
    'nano': dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640)),
    'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
    'small': dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
    'base': dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
    'large': dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),
    'xlarge': dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048)),
    'huge': dict(depths=(3, 3, 27, 3), dims=(352, 704, 1408, 2816)),
}
NUM_STAGES = 4
STEM_STRIDE = 4
DECAY_TYPES = ('layer_wise', 'stage_wise')


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor.

    It runs PyTorch's fused ``layer_norm`` on a channels-last view instead of the official hand-written mean/variance,
    which overflows in fp16 (the squares of large activations exceed 65504). For a tensor in ``channels_last`` memory
    format the permutes are free.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GRN(nn.Module):
    """Global Response Normalization of ConvNeXt V2, on channels-last input."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The norm is taken in fp32: under fp16 autocast the sum of squares over a feature map overflows.
        spatial_norm = torch.linalg.vector_norm(x.float(), ord=2, dim=(1, 2), keepdim=True)
        response = (spatial_norm / (spatial_norm.mean(dim=-1, keepdim=True) + self.eps)).to(x.dtype)
        return x + torch.addcmul(self.beta, self.gamma, x * response)


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample, rescaling the kept ones."""
    if drop_prob == 0. or not training:
        return x
    keep_prob = 1 - drop_prob
    mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep_prob)
    return x * mask.div_(keep_prob)


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> LayerNorm -> Linear 4x -> GELU [-> GRN] -> Linear [-> layer scale], plus the residual.

    The MLP runs channels-last on a permuted view, the fastest layout for both the LayerNorm and the Linear layers.
    """

    def __init__(self, dim: int, drop_path_rate: float = 0., layer_scale_init_value: float = 1e-6,
                 use_grn: bool = False, mlp_ratio: int = 4):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.grn = GRN(mlp_ratio * dim) if use_grn else None
        self.pwconv2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim, ), float(layer_scale_init_value))) \
            if layer_scale_init_value else None
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.act(self.pwconv1(self.norm(x)))
        if self.grn is not None:
            x = self.grn(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = x * self.gamma
        x = x.permute(0, 3, 1, 2)
        return shortcut + drop_path(x, self.drop_path_rate, self.training)

    def extra_repr(self) -> str:
        return f'drop_path_rate={self.drop_path_rate:.3f}'


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad bottom/right so a stride-``multiple`` patchify conv sees every pixel (no silent cropping).

    Under ONNX tracing the pad is always recorded (its amounts computed from the input's shape), so that a graph
    exported at one size pads correctly at every other."""
    pad_h, pad_w = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    return F.pad(x, (0, pad_w, 0, pad_h)) if torch.jit.is_tracing() or pad_h or pad_w else x


class Downsample(nn.Sequential):
    """A patchify conv (the stem, or a 2x2 stride-2 downsampling), padding inputs of odd size first.

    Outputs of stage ``i`` therefore have size ``ceil(H / stride_i)`` for any input size.
    """

    def __init__(self, *layers: nn.Module, stride: int):
        super().__init__(*layers)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_pad_to_multiple(x, self.stride))


class FrozenModules(BaseModule):
    """Frozen parts (``_frozen_modules``, given by the backbone) kept frozen: no gradients, and eval mode whenever
    the model is put in training mode."""

    def _frozen_modules(self):
        return iter(())

    def _freeze_stages(self):
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self


@MODELS.register_module()
class ConvNeXt(FrozenModules):
    """ConvNeXt V1/V2 emitting the feature maps of the chosen stages, each through its own LayerNorm.

    Args:
        arch: one of :data:`ARCHS`, or ``dict(depths=[...4], dims=[...4])``.
        version: 1, or 2 for ConvNeXt V2 (GRN in the MLP, no layer scale by default).
        in_channels: channels of the input image.
        out_indices: stages whose outputs are returned, any subset of 0..3 (negative indices count from the end).
        drop_path_rate: stochastic depth rate of the last block, spread linearly from 0 over all blocks.
        layer_scale_init_value: initial layer scale; ``None`` picks 1e-6 for V1 and none for V2, 0 disables it.
        frozen_stages: the first ``frozen_stages`` stages (with their downsampling and output norms) are frozen and kept
            in eval mode; 0 or -1 freezes nothing.
        with_cp: activation checkpointing per block, trading compute for memory.
        channels_last: run in the ``channels_last`` memory format (faster convs and free permutes on GPUs); the
            outputs are returned as contiguous NCHW all the same, which mmcv's RoIAlign requires.
        compile: ``torch.compile`` the forward pass (``True``, or a dict of ``torch.compile`` arguments such as
            ``dict(mode='max-autotune')``); compiled on the first call.
        pretrained: checkpoint path; shorthand for ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg: mmengine init config. ``type='Pretrained'`` loads official, mmpretrain or timm checkpoints through
            :func:`convnext_dense.checkpoint.backbone.load_pretrained`, which reports what did not load.
    """

    arch_settings = ARCHS
    checkpoint_layout = OFFICIAL_LAYOUT  # its state_dict keys: other layouts are mapped onto them when loading

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 version: int = 1,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: Optional[float] = None,
                 frozen_stages: int = 0,
                 with_cp: bool = False,
                 channels_last: bool = False,
                 compile: Union[bool, dict] = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('ConvNeXt: give either pretrained or init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        self.depths, self.dims = _resolve_arch(arch)
        if version not in (1, 2):
            raise ValueError(f'ConvNeXt: version must be 1 or 2, got {version!r}')
        if layer_scale_init_value is None:
            layer_scale_init_value = 1e-6 if version == 1 else 0.
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f'ConvNeXt: drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.version = version
        self.in_channels = in_channels
        self.out_indices = _resolve_out_indices(out_indices)
        if not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(f'ConvNeXt: frozen_stages must be in -1..{NUM_STAGES}, got {frozen_stages}')
        self.frozen_stages = max(frozen_stages, 0)
        self.with_cp = with_cp
        self.channels_last = channels_last
        self.compile_args = (compile if isinstance(compile, dict) else {}) if compile else None
        self._compiled_forward = None

        self.downsample_layers = nn.ModuleList([
            Downsample(nn.Conv2d(in_channels, self.dims[0], kernel_size=STEM_STRIDE, stride=STEM_STRIDE),
                       LayerNorm2d(self.dims[0], eps=1e-6), stride=STEM_STRIDE)
        ])
        # Stages after the last output are not built: they would cost compute and leave DDP with unused parameters.
        num_built = self.out_indices[-1] + 1
        for i in range(1, num_built):
            self.downsample_layers.append(
                Downsample(LayerNorm2d(self.dims[i - 1], eps=1e-6),
                           nn.Conv2d(self.dims[i - 1], self.dims[i], kernel_size=2, stride=2), stride=2))

        num_blocks = sum(self.depths)
        rates = [drop_path_rate * j / max(num_blocks - 1, 1) for j in range(num_blocks)]
        self.stages = nn.ModuleList()
        for i, depth in enumerate(self.depths[:num_built]):
            first = sum(self.depths[:i])
            self.stages.append(nn.Sequential(*[
                ConvNeXtBlock(self.dims[i], rates[first + j], layer_scale_init_value, use_grn=version == 2)
                for j in range(depth)
            ]))
        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(self.dims[i], eps=1e-6))
        self._init_weights()
        self._freeze_stages()

    @property
    def out_strides(self) -> tuple:
        return tuple(STEM_STRIDE * 2**i for i in self.out_indices)

    @property
    def out_channels(self) -> tuple:
        return tuple(self.dims[i] for i in self.out_indices)

    def layer_id(self, name: str, decay_type: str = 'layer_wise', num_layers: Optional[int] = None) -> int:
        """The layer id of a parameter for learning-rate decay, as in the official ConvNeXt recipes.

        ``name`` is relative to the backbone (``stages.2.5.pwconv1.weight``); ``num_layers`` defaults to the official
        count (:meth:`default_num_layers`). ``layer_wise``: the stem is layer 0, stage 0 layer 1, stage 1 (and its
        downsample) layer 2, stage 2 (and its downsample) layers 3 + block // 3, stage 3 (and its downsample) layer
        ``num_layers``. ``stage_wise``: downsamples are layer 0, stage i is layer i + 1. Everything else (the output
        norms) gets ``num_layers + 1``, the layer of the neck and heads.
        """
        if decay_type not in DECAY_TYPES:
            raise ValueError(f'decay_type must be one of {DECAY_TYPES}, got {decay_type!r}')
        num_layers = self.default_num_layers() if num_layers is None else num_layers
        parts = name.split('.')
        if parts[0] not in ('downsample_layers', 'stages'):
            return num_layers + 1
        stage = int(parts[1])
        if decay_type == 'stage_wise':
            return 0 if parts[0] == 'downsample_layers' else stage + 1
        if stage == 3:
            return num_layers
        if parts[0] == 'downsample_layers':
            return (0, 2, 3)[stage]
        return 3 + int(parts[2]) // 3 if stage == 2 else stage + 1

    def default_num_layers(self) -> int:
        """The official recipes' ``num_layers``: 6 for a 9-block stage 2 (T), 12 for the 27-block ones (S/B/L/XL)."""
        return 12 if self.depths[2] > 9 else 6

    def get_layer_depth(self, param_name: str, prefix: str = '') -> tuple:
        """mmpretrain's layer-depth interface (``LearningRateDecayOptimWrapperConstructor``): ``(layer id, number of
        layers)`` with the official layer-wise ids; parameters outside ``prefix`` count as the layer after the last."""
        num_layers = self.default_num_layers()
        if not param_name.startswith(prefix):
            return num_layers + 1, num_layers + 2
        return self.layer_id(param_name[len(prefix):], 'layer_wise', num_layers), num_layers + 2

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
        for i in range(min(self.frozen_stages, len(self.stages))):
            yield self.downsample_layers[i]
            yield self.stages[i]
            if i in self.out_indices:
                yield getattr(self, f'norm{i}')

    def forward(self, x: torch.Tensor) -> tuple:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ConvNeXt expects input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}; '
                             'set in_channels to match your data')
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.compile_args is None:
            return self._forward_stages(x)
        if self._compiled_forward is None:
            # The unbound function: a bound one would tie deep copies of this module (EMA) to the original.
            self._compiled_forward = torch.compile(type(self)._forward_stages, **self.compile_args)
        return self._compiled_forward(self, x)

    def _forward_stages(self, x: torch.Tensor) -> tuple:
        outs = []
        for i in range(len(self.stages)):
            x = self.downsample_layers[i](x)
            for block in self.stages[i]:
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
            raise ValueError(f'ConvNeXt: unknown arch {arch!r}; choose one of {", ".join(ARCHS)} '
                             'or pass dict(depths=[d0, d1, d2, d3], dims=[c0, c1, c2, c3])')
        arch = ARCHS[arch]
    if not isinstance(arch, dict) or set(arch) != {'depths', 'dims'}:
        raise ValueError(f'ConvNeXt: arch must be a name or dict(depths=[...], dims=[...]), got {arch!r}')
    depths, dims = tuple(arch['depths']), tuple(arch['dims'])
    if len(depths) != NUM_STAGES or len(dims) != NUM_STAGES or min(depths) < 1 or min(dims) < 1:
        raise ValueError(f'ConvNeXt: arch needs {NUM_STAGES} positive depths and dims, '
                         f'got depths={depths}, dims={dims}')
    return depths, dims


def _resolve_out_indices(out_indices: Union[int, Sequence[int]]) -> tuple:
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    resolved = []
    for index in out_indices:
        if not isinstance(index, int) or not -NUM_STAGES <= index < NUM_STAGES:
            raise ValueError(f'ConvNeXt: out_indices must be stage indices in {-NUM_STAGES}..{NUM_STAGES - 1}, '
                             f'got {index!r} in {tuple(out_indices)}')
        resolved.append(index % NUM_STAGES)
    if not resolved or len(set(resolved)) != len(resolved):
        raise ValueError(f'ConvNeXt: out_indices must be a non-empty list of distinct stages, got {tuple(out_indices)}')
    return tuple(sorted(resolved))
