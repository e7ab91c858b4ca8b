"""Layer-wise / stage-wise learning-rate decay for ConvNeXt, the same constructor in mmdet and mmseg.

mmdet and mmseg each register a ConvNeXt-only copy of the official constructor under the name
``LearningRateDecayOptimizerConstructor``; importing this module makes that name resolve to this class in both (and in
mmengine's root registry), so existing configs get its behaviour: the official multipliers, found by module rather than
by name strings, ``custom_keys`` for the rest of the model, and clear errors instead of silent fallbacks.
"""
import logging
from typing import Dict, List, Optional

import torch
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from ...models.backbones.convnext import NUM_STAGES, ConvNeXt, layer_id

NAME = 'LearningRateDecayOptimizerConstructor'
DECAY_TYPES = ('layer_wise', 'stage_wise')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(name=NAME)
class LearningRateDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Scale each parameter's learning rate by ``decay_rate ** (num_layers + 1 - layer_id)``.

    ``paramwise_cfg``: ``decay_rate``, ``num_layers`` (6 for ConvNeXt-T, 12 for larger ones in the official recipes),
    ``decay_type`` (``layer_wise`` or ``stage_wise``), and optionally ``custom_keys``
    (``{substring: dict(lr_mult=..., decay_mult=...)}``), applied to parameters outside the backbone.
    Layer ids come from :func:`convnext_dense.models.backbones.convnext.layer_id`; parameters outside every ConvNeXt in the model (neck,
    heads, output norms) get ``num_layers + 1``, i.e. the base learning rate. 1-D parameters (norms, biases, layer
    scales, GRN) and biases get no weight decay.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        missing = [k for k in ('decay_rate', 'num_layers') if k not in paramwise_cfg]
        if missing:
            raise ValueError(f'{NAME}: paramwise_cfg needs {missing}, e.g. '
                             "paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=12)")
        self.decay_rate = float(paramwise_cfg.pop('decay_rate'))
        self.num_layers = int(paramwise_cfg.pop('num_layers'))
        self.decay_type = paramwise_cfg.pop('decay_type', 'layer_wise')
        self.custom_keys: Dict[str, dict] = paramwise_cfg.pop('custom_keys', {})
        if paramwise_cfg:
            raise ValueError(f'{NAME}: unsupported paramwise_cfg keys {sorted(paramwise_cfg)}; it takes decay_rate, '
                             'num_layers, decay_type and custom_keys (use custom_keys for per-module multipliers)')
        if self.decay_type not in DECAY_TYPES:
            raise ValueError(f'{NAME}: decay_type must be one of {DECAY_TYPES}, got {self.decay_type!r}')
        if not 0 < self.decay_rate <= 1:
            raise ValueError(f'{NAME}: decay_rate must be in (0, 1], got {self.decay_rate}')
        if self.num_layers < NUM_STAGES:
            raise ValueError(f'{NAME}: num_layers must be at least {NUM_STAGES}, got {self.num_layers}')
        super().__init__(optim_wrapper_cfg, dict(custom_keys=self.custom_keys))
        if self.base_lr is None or self.base_wd is None:
            raise ValueError(f'{NAME}: the optimizer config needs lr and weight_decay')

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        backbones = {name: m for name, m in module.named_modules() if isinstance(m, ConvNeXt)}
        if not backbones:
            raise TypeError(f'{NAME}: the model has no convnext_dense ConvNeXt backbone, so layer decay does not apply; '
                            "use type='ConvNeXt' with custom_imports=dict(imports=['convnext_dense']), or drop the "
                            'constructor for other backbones')
        for name, backbone in backbones.items():
            self._check_num_layers(name, backbone)
        groups: Dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen stages
            layer, lr, weight_decay = self._param_settings(name, param, backbones)
            group = groups.setdefault(f'layer_{layer}_lr{lr:.3e}_wd{weight_decay:.3e}', dict(
                params=[], param_names=[], lr=lr, weight_decay=weight_decay, layer_id=layer,
                lr_scale=lr / self.base_lr))
            group['params'].append(param)
            group['param_names'].append(name)
        params.extend(groups.values())
        print_log(self._describe(groups.values()), logger='current', level=logging.INFO)

    def _param_settings(self, name: str, param: torch.Tensor, backbones: Dict[str, ConvNeXt]) -> tuple:
        weight_decay = 0. if param.ndim <= 1 or name.endswith('.bias') else self.base_wd
        backbone_prefix = next((p for p in backbones if name.startswith(f'{p}.')), None)
        if backbone_prefix is not None:
            layer = layer_id(name[len(backbone_prefix) + 1:], self.decay_type, self.num_layers)
            lr = self.base_lr * self.decay_rate**(self.num_layers + 1 - layer)
            return layer, lr, weight_decay
        lr = self.base_lr
        key = next((k for k in sorted(sorted(self.custom_keys), key=len, reverse=True) if k in name), None)
        if key is not None:
            lr *= self.custom_keys[key].get('lr_mult', 1.)
            weight_decay *= self.custom_keys[key].get('decay_mult', 1.)
        return self.num_layers + 1, lr, weight_decay

    def _check_num_layers(self, name: str, backbone: ConvNeXt) -> None:
        if self.decay_type != 'layer_wise' or len(backbone.depths) < 3:
            return
        deepest = 3 + (backbone.depths[2] - 1) // 3  # layer id of the last block of stage 2
        if deepest >= self.num_layers:
            raise ValueError(f'{NAME}: num_layers={self.num_layers} is too small for {name or "the backbone"} with '
                             f'{backbone.depths[2]} blocks in stage 2 (its blocks reach layer id {deepest}); use '
                             f'num_layers={deepest + 1} (the official recipes: 6 for ConvNeXt-T, 12 for S/B/L/XL)')

    def _describe(self, groups) -> str:
        lines = [f'{NAME}: {self.decay_type}, decay_rate={self.decay_rate}, num_layers={self.num_layers}',
                 f'  {"layer":>5} {"lr_scale":>10} {"weight_decay":>12} {"params":>7}']
        for g in sorted(groups, key=lambda g: (g['layer_id'], g['lr'], g['weight_decay'])):
            lines.append(f'  {g["layer_id"]:>5} {g["lr_scale"]:>10.4g} {g["weight_decay"]:>12.4g} {len(g["params"]):>7}')
        return '\n'.join(lines)


def _take_over(registry) -> None:
    """Make ``registry`` (mmdet's or mmseg's) resolve NAME to our class.

    Those registries import their own copy lazily, on first use, and would then refuse a name already taken; so ours is
    registered right after that import, by wrapping the registry's lazy import.
    """
    import_own_modules = registry.import_from_location

    def import_then_take_over():
        import_own_modules()
        if registry.module_dict.get(NAME) is not LearningRateDecayOptimizerConstructor:
            registry.register_module(name=NAME, module=LearningRateDecayOptimizerConstructor, force=True)

    registry.import_from_location = import_then_take_over


def _registries_of_downstream_packages():
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMDET_CONSTRUCTORS
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMSEG_CONSTRUCTORS
    return MMDET_CONSTRUCTORS, MMSEG_CONSTRUCTORS


for _registry in _registries_of_downstream_packages():
    _take_over(_registry)
