"""Layer-wise / stage-wise learning-rate decay, one constructor name for mmdet, mmseg and mmengine alike.

mmdet and mmseg each register a constructor named ``LearningRateDecayOptimizerConstructor`` (copies of the official
ConvNeXt one; mmseg's also serves BEiT and MAE). ``import convnext_dense`` makes that name resolve to
:class:`LearningRateDecayOptimizerConstructor` in both registries and in mmengine's root, which decides per model:

1. a model with our ConvNeXt gets our param groups (official layer ids asked from the backbone, ``custom_keys`` for the
   rest of the model, clear errors);
2. any other model goes to the host's own constructor (mmdet's or mmseg's, the one the config's scope names), so
   their configs (mmpretrain's ConvNeXt, BEiT, MAE, backbones named as the official ConvNeXt) get exactly the param
   groups they got without the import;
3. a backbone that neither handles gets layer decay when it exposes mmpretrain's ``get_layer_depth(param_name,
   prefix)``.

The registries of mmdet and mmseg are taken over by :func:`convnext_dense.patches.take_over_layer_decay_name`, with the
other process-wide changes, which sets ``host_constructor`` on the class standing in for theirs.
"""
import copy
import logging
from typing import Callable, Dict, List, Optional, Tuple

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ...models.backbones.convnext import DECAY_TYPES, NUM_STAGES, ConvNeXt
from ...models.backbones.convnext_isotropic import ConvNeXtIsotropic

NAME = 'LearningRateDecayOptimizerConstructor'
OUR_KEYS = ('decay_rate', 'num_layers', 'decay_type', 'custom_keys', 'norm_decay_mult', 'bias_decay_mult')

NORM_LAYERS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)  # mmengine's norm_decay_mult applies to these
# (relative parameter name) -> (layer id, number of layers + 2): the scale is decay_rate ** (count - id - 1).
LayerDepth = Callable[[str], Tuple[int, int]]


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(name=NAME)
class LearningRateDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Scale each backbone parameter's learning rate by ``decay_rate ** (num_layers + 1 - layer_id)``.

    ``paramwise_cfg``: ``decay_rate``, ``num_layers`` (6 for ConvNeXt-T, 12 for larger ones in the official recipes),
    ``decay_type`` (``layer_wise`` or ``stage_wise``), and optionally:

    - ``custom_keys`` (``{substring: dict(lr_mult=..., decay_mult=...)}``, the longest matching key wins), for any
      parameter: on a backbone parameter an ``lr_mult`` multiplies its layer decay (DINO's ``backbone`` 0.1);
    - ``norm_decay_mult`` / ``bias_decay_mult``: the weight decay of normalisation layers' parameters / of biases, as a
      multiple of the base one (mmengine's meaning).

    Layer ids come from the backbone (:meth:`ConvNeXt.layer_id`, or ``get_layer_depth`` of other backbones);
    parameters outside the backbone (neck, heads) and its output norms get the base learning rate. As in the official
    recipes, 1-D parameters and biases get no weight decay unless ``norm_decay_mult`` / ``bias_decay_mult`` say
    otherwise.
    """

    host_constructor: Optional[type] = None  # mmdet's or mmseg's own class of this name, in their registries

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        self._host_args = copy.deepcopy((optim_wrapper_cfg, paramwise_cfg))
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model: nn.Module):
        module = model.module if hasattr(model, 'module') else model
        # Without num_layers the host constructors fail on any model: there is no behaviour of theirs to keep. Our
        # isotropic ConvNeXt stays here too: the hosts take any backbone named *ConvNeXt* for the hierarchical one,
        # and would give its blocks (no `stages.`) no decay at all.
        if self.host_constructor is not None and not _convnexts(module) and not _isotropic(module) \
                and 'num_layers' in self.paramwise_cfg:
            try:
                return self.host_constructor(*copy.deepcopy(self._host_args))(model)
            except NotImplementedError:  # the host's way of saying it has no layer ids for this backbone
                if not hasattr(getattr(module, 'backbone', None), 'get_layer_depth'):
                    raise NotImplementedError(_unsupported(module)) from None
        return super().__call__(model)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        decay_rate, decay_type, num_layers, custom_keys = self._settings()
        backbones = self._layer_depths(module, decay_type, num_layers)
        keys_longest_first = sorted(sorted(custom_keys), key=len, reverse=True)
        norm_params = {id(p) for m in module.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters()}
        groups: Dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen stages
            weight_decay = self._weight_decay(name, param, id(param) in norm_params)
            lr, layer = self.base_lr, None
            backbone = next((p for p in backbones if name.startswith(f'{p}.')), None)
            if backbone is not None:
                layer, count = backbones[backbone](name[len(backbone) + 1:])
                lr *= decay_rate**(count - layer - 1)
            key = next((k for k in keys_longest_first if k in name), None)
            if key is not None:
                lr *= custom_keys[key].get('lr_mult', 1.)
                weight_decay *= custom_keys[key].get('decay_mult', 1.)
            group = groups.setdefault(f'layer_{layer}_lr{lr:.3e}_wd{weight_decay:.3e}', dict(
                params=[], param_names=[], lr=lr, weight_decay=weight_decay, layer_id=layer,
                lr_scale=lr / self.base_lr))
            group['params'].append(param)
            group['param_names'].append(name)
        params.extend(groups.values())
        print_log(self._describe(groups.values(), decay_type, decay_rate, num_layers), logger='current',
                  level=logging.INFO)

    def _weight_decay(self, name: str, param: nn.Parameter, in_norm_layer: bool) -> float:
        cfg = self.paramwise_cfg
        if in_norm_layer and 'norm_decay_mult' in cfg:
            return self.base_wd * cfg['norm_decay_mult']
        if name.endswith('.bias') and 'bias_decay_mult' in cfg:
            return self.base_wd * cfg['bias_decay_mult']
        return 0. if param.ndim <= 1 or name.endswith('.bias') else self.base_wd

    def _settings(self) -> tuple:
        cfg = self.paramwise_cfg
        unknown = sorted(set(cfg) - set(OUR_KEYS))
        if unknown:
            raise ValueError(f'{NAME}: unsupported paramwise_cfg keys {unknown}; it takes {", ".join(OUR_KEYS)} '
                             '(use custom_keys for per-module multipliers)')
        if 'decay_rate' not in cfg:
            raise ValueError(f"{NAME}: paramwise_cfg needs ['decay_rate'], e.g. "
                             "paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=12)")
        decay_rate, decay_type = float(cfg['decay_rate']), cfg.get('decay_type', 'layer_wise')
        if decay_type not in DECAY_TYPES:
            raise ValueError(f'{NAME}: decay_type must be one of {DECAY_TYPES}, got {decay_type!r}')
        if not 0 < decay_rate <= 1:
            raise ValueError(f'{NAME}: decay_rate must be in (0, 1], got {decay_rate}')
        if self.base_lr is None or self.base_wd is None:
            raise ValueError(f'{NAME}: the optimizer config needs lr and weight_decay')
        return decay_rate, decay_type, cfg.get('num_layers'), cfg.get('custom_keys', {})

    def _layer_depths(self, module: nn.Module, decay_type: str, num_layers: Optional[int]) -> Dict[str, LayerDepth]:
        """Each backbone of the model (by module prefix) with the function giving its parameters' layer depths."""
        convnexts = _convnexts(module)
        if convnexts:
            if num_layers is None:
                raise ValueError(f"{NAME}: paramwise_cfg needs ['num_layers'] for ConvNeXt (the official recipes: 6 "
                                 'for ConvNeXt-T, 12 for S/B/L/XL)')
            if int(num_layers) < NUM_STAGES:
                raise ValueError(f'{NAME}: num_layers must be at least {NUM_STAGES}, got {num_layers}')
            for name, backbone in convnexts.items():
                _check_num_layers(name, backbone, decay_type, int(num_layers))
            return {name: (lambda param, b=backbone: (b.layer_id(param, decay_type, int(num_layers)),
                                                      int(num_layers) + 2))
                    for name, backbone in convnexts.items()}
        backbone = getattr(module, 'backbone', None)
        if not hasattr(backbone, 'get_layer_depth'):
            raise NotImplementedError(_unsupported(module))
        what = f'{type(backbone).__name__} gives its own layer ids (get_layer_depth)'
        if decay_type != 'layer_wise':
            raise ValueError(f"{NAME}: {what}, so its decay is layer_wise; drop decay_type='{decay_type}'")
        first_param = next((name for name, _ in backbone.named_parameters()), None)
        count = backbone.get_layer_depth(first_param)[1] if first_param is not None else None
        if num_layers is not None and count is not None and int(num_layers) != count - 2:
            raise ValueError(f'{NAME}: {what} with {count - 2} layers, but paramwise_cfg has num_layers={num_layers}; '
                             f'set num_layers={count - 2} or drop it')
        return {'backbone': backbone.get_layer_depth}

    def _describe(self, groups, decay_type: str, decay_rate: float, num_layers: Optional[int]) -> str:
        lines = [f'{NAME}: {decay_type}, decay_rate={decay_rate}, num_layers={num_layers}',
                 f'  {"layer":>5} {"lr_scale":>10} {"weight_decay":>12} {"params":>7}']
        for g in sorted(groups, key=lambda g: (g['layer_id'] is None, g['layer_id'] or 0, g['lr'],
                                               g['weight_decay'])):
            layer = 'rest' if g['layer_id'] is None else g['layer_id']
            lines.append(f'  {layer:>5} {g["lr_scale"]:>10.4g} {g["weight_decay"]:>12.4g} {len(g["params"]):>7}')
        return '\n'.join(lines)


def _convnexts(module: nn.Module) -> Dict[str, ConvNeXt]:
    return {name: m for name, m in module.named_modules() if isinstance(m, ConvNeXt)}


def _isotropic(module: nn.Module) -> bool:
    return any(isinstance(m, ConvNeXtIsotropic) for m in module.modules())


def _check_num_layers(name: str, backbone: ConvNeXt, decay_type: str, num_layers: int) -> None:
    if decay_type != 'layer_wise' or len(backbone.stages) < 3:
        return
    deepest = backbone.layer_id(f'stages.2.{backbone.depths[2] - 1}.dwconv.weight', decay_type, num_layers)
    if deepest >= num_layers:
        raise ValueError(f'{NAME}: num_layers={num_layers} is too small for {name or "the backbone"} with '
                         f'{backbone.depths[2]} blocks in stage 2 (its blocks reach layer id {deepest}); use '
                         f'num_layers={deepest + 1} (the official recipes: 6 for ConvNeXt-T, 12 for S/B/L/XL)')


def _unsupported(module: nn.Module) -> str:
    backbone = getattr(module, 'backbone', None)
    what = type(backbone).__name__ if backbone is not None else f'{type(module).__name__} (no backbone)'
    return (f'{NAME}: no layer ids for {what}. Layer decay applies to ConvNeXt (ours, mmpretrain\'s), to the '
            'backbones mmdet/mmseg handle themselves (mmseg: BEiT, MAE) and to any backbone with a '
            "get_layer_depth(param_name, prefix) method; for others drop the constructor (or use custom_keys with "
            "mmengine's DefaultOptimWrapperConstructor)")
