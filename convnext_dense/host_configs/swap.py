"""Put ConvNeXt into any mmdet / mmseg model config: :func:`swap_backbone`, and the short config file it writes.

The rewrite is read from the host's *model* config (:mod:`.readers`), not from a table of file names:

- ``out_indices``: exactly the stages that the neck or heads read, so no output norm is left without a gradient
  (DDP stops on one);
- every channel, index and stride field that a neck or head takes from the backbone, from ConvNeXt's own
  ``out_channels`` / ``out_strides``;
- the data preprocessor: ImageNet RGB mean/std, as ConvNeXt was pre-trained;
- mmseg's model-level ``pretrained`` (a ResNet checkpoint name) set to None;
- ``custom_imports`` merged with the host's;
- the optimizer: AdamW with :class:`LearningRateDecayOptimizerConstructor` and the official recipe's decay
  (:mod:`.recipes`); the host's ``custom_keys`` stay (an ``lr_mult`` on ``backbone`` multiplies the layer decay), as do
  its ``clip_grad``, wrapper type and norm / bias decay settings.

Everything else (data, schedule, heads) stays the host's.
"""
import importlib.util
import os.path as osp
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmengine.config import Config

from ..models.backbones.convnext import ConvNeXt
from ..utils.config_tree import plain
from .readers import HostConfigError, Output, host_stages, host_value, readers, scope_of
from .recipes import recipe

IMAGENET_RGB = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
KEPT_PARAMWISE_KEYS = ('custom_keys', 'norm_decay_mult', 'bias_decay_mult')
WHY_DROPPED = {
    'bypass_duplicate': 'the layer-decay constructor lists each shared parameter once',
    'dcn_offset_lr_mult': 'ConvNeXt has no deformable convolutions',
}


@dataclass
class SwapPlan:
    """The delta a swap lays over its host, and why each part changed (``{dotted key: reason}``)."""
    host: str
    delta: dict
    reasons: Dict[str, str] = field(default_factory=dict)
    title: str = ''


def load_host(host: Union[str, Config]) -> Tuple[str, Config]:
    """The host config and how to name it in ``_base_``: a path, or an ``mmdet::`` / ``mmseg::`` reference."""
    if isinstance(host, Config):
        return host.filename, host
    path = host
    if '::' in host:
        package, relative = host.split('::', 1)
        spec = importlib.util.find_spec(package) if package in ('mmdet', 'mmseg') else None
        if spec is None:
            raise HostConfigError(f'{host}: {package!r} is not an installed mmdet / mmseg package')
        path = osp.join(spec.submodule_search_locations[0], '.mim', 'configs', relative)
    if not osp.isfile(path):
        raise HostConfigError(f'host config not found: {host}')
    return host, Config.fromfile(path)


def plan_swap(host: Union[str, Config], arch: Union[str, dict] = 'tiny', version: int = 1,
              pretrained: Optional[str] = None, drop_path_rate: Optional[float] = None,
              layer_decay: Optional[float] = None) -> SwapPlan:
    """The config delta that puts ConvNeXt ``arch`` (V``version``) into the model of ``host``."""
    name, cfg = load_host(host)
    scope = scope_of(cfg)
    model = cfg.model
    old_stages = host_stages(model.backbone, scope)
    num_old = len(old_stages)
    found = readers(model, scope)
    stages = tuple(sorted({old_stages[p] for reader in found for p in reader.rule.reads(reader.cfg, num_old)}))
    with torch.device('meta'):
        backbone = ConvNeXt(arch=arch, version=version, out_indices=stages)
    outputs = [Output(s, c, st) for s, c, st in zip(stages, backbone.out_channels, backbone.out_strides)]
    position = {p: stages.index(old_stages[p]) for p in range(num_old) if old_stages[p] in stages}
    chosen = recipe(scope, version, arch)
    label = f'ConvNeXt{"V2" if version == 2 else ""}-{arch if isinstance(arch, str) else "custom"}'
    plan = SwapPlan(name, dict(model=dict()),
                    title=f'{label} in {name}. Data, schedule and heads stay the host\'s.')
    delta_model = plan.delta['model']

    readers_text = ', '.join(f'{r.where} ({r.type})' for r in found)
    unread = sorted(set(range(4)) - set(stages))
    plan.reasons['model.backbone'] = (
        f'{label}, returning stages {stages}: those that {readers_text} read'
        + (f'; stage(s) {tuple(unread)} would be read by nothing (DDP stops on an unused output norm)'
           if unread else '')
        + f'. Drop path as {chosen.source}.'
        + ('' if pretrained else ' No --pretrained: random init (give an ImageNet checkpoint to fine-tune one).'))
    delta_model['backbone'] = dict(
        _delete_=True, type='ConvNeXt', arch=arch, **(dict(version=2) if version == 2 else {}), out_indices=stages,
        drop_path_rate=chosen.drop_path_rate if drop_path_rate is None else drop_path_rate,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained) if pretrained else None)
    for reader in found:
        values = reader.rule.fields(reader.cfg, num_old, outputs, position)
        changed = {k: v for k, v in values.items() if plain(host_value(scope, reader.cfg, k)) != v}
        if changed:
            _set_fields(delta_model, model, reader.path, changed)
            plan.reasons[reader.where] = (f'{reader.type} reads ConvNeXt\'s outputs: '
                                          + ', '.join(f'{k}={v}' for k, v in changed.items())
                                          + (f'; {reader.note}' if reader.note else ''))
    _swap_data_preprocessor(plan, model)
    if scope == 'mmseg' and model.get('pretrained'):
        delta_model['pretrained'] = None
        plan.reasons['model.pretrained'] = (f'the host\'s {model.pretrained!r} is a ResNet checkpoint; mmseg would '
                                            'push it into the backbone')
    _swap_imports(plan, cfg)
    _swap_optimizer(plan, cfg, scope, chosen, backbone.default_num_layers(), layer_decay)
    if cfg.get('load_from'):
        plan.delta['load_from'] = None
        plan.reasons['load_from'] = f'the host\'s {cfg.load_from} holds a model with another backbone'
    return plan


def swap_backbone(host: Union[str, Config], arch: Union[str, dict] = 'tiny', version: int = 1,
                  pretrained: Optional[str] = None, drop_path_rate: Optional[float] = None,
                  layer_decay: Optional[float] = None) -> Config:
    """The host config (a path, ``mmdet::`` / ``mmseg::`` reference or Config) with ConvNeXt as its backbone.

    See the module docstring for what changes; it is the config that :func:`write_swap` writes, loaded.
    """
    plan = plan_swap(host, arch, version, pretrained, drop_path_rate, layer_decay)
    with tempfile.TemporaryDirectory() as folder:  # one path for both: the config is the file the tool writes
        return Config.fromfile(write_swap(plan, osp.join(folder, 'swapped.py')))


def write_swap(plan: SwapPlan, out: str) -> str:
    """Write ``plan`` as a config file, ``_base_`` = the host then the delta with the reasons as comments; returns
    ``out``."""
    base = plan.host
    if '::' not in base:
        base = osp.relpath(osp.abspath(base), osp.dirname(osp.abspath(out)))
    lines = [f'# {line}' for line in _wrap(f'{plan.title} Written by tools/swap_backbone.py.', 116)]
    lines += [f'_base_ = {base!r}', '']
    for key, value in plan.delta.items():
        if key == 'model':
            lines.append('model = dict(')
            for sub, sub_value in value.items():
                lines += [f'    # {line}' for line in _wrap(plan.reasons.get(f'model.{sub}', ''), 112)]
                lines.append(f'    {sub}={_literal(sub_value, 4, 120 - len(sub) - 1)},')
            lines.append(')')
        else:
            lines += [f'# {line}' for line in _wrap(plan.reasons.get(key, ''), 116)]
            lines.append(f'{key} = {_literal(value, 0, 120 - len(key) - 3)}')
        lines.append('')
    text = '\n'.join(lines)
    with open(out, 'w') as f:
        f.write(text)
    return out


def _swap_data_preprocessor(plan: SwapPlan, model) -> None:
    host = model.get('data_preprocessor') or {}
    if all(plain(host.get(k)) == v for k, v in IMAGENET_RGB.items()):
        return
    plan.delta['model']['data_preprocessor'] = dict(IMAGENET_RGB)
    had = ', '.join(f'{k}={plain(host.get(k))}' for k in IMAGENET_RGB) if host.get('mean') else 'no mean/std'
    plan.reasons['model.data_preprocessor'] = f'ImageNet RGB mean/std, as ConvNeXt was pre-trained (the host had {had})'


def _swap_imports(plan: SwapPlan, cfg) -> None:
    host = cfg.get('custom_imports') or {}
    imports = host.get('imports', [])
    imports = [imports] if isinstance(imports, str) else list(imports)  # mmengine takes one name or a list
    if 'convnext_dense' in imports:
        return
    plan.delta['custom_imports'] = dict(imports=imports + ['convnext_dense'],
                                        allow_failed_imports=host.get('allow_failed_imports', False))
    plan.reasons['custom_imports'] = ('registers ConvNeXt and the layer-decay constructor'
                                      + (' (the host\'s imports kept)' if imports else ''))


def _swap_optimizer(plan: SwapPlan, cfg, scope: str, chosen, num_layers: int, layer_decay: Optional[float]) -> None:
    wrapper = cfg.get('optim_wrapper') or {}
    optimizer = wrapper.get('optimizer') or {}
    host_paramwise = dict(wrapper.get('paramwise_cfg') or {})
    decay_rate = chosen.decay_rate if layer_decay is None else layer_decay
    paramwise = dict(decay_rate=decay_rate, decay_type=chosen.decay_type, num_layers=num_layers)
    paramwise.update({k: plain(host_paramwise[k]) for k in KEPT_PARAMWISE_KEYS if k in host_paramwise})
    dropped = sorted(set(host_paramwise) - set(KEPT_PARAMWISE_KEYS))
    if 'paramwise_cfg' in wrapper:
        paramwise = dict(_delete_=True, **paramwise)
    delta = dict(constructor='LearningRateDecayOptimizerConstructor', paramwise_cfg=paramwise)
    if optimizer.get('type') == 'AdamW':
        how = f'the host\'s AdamW (lr={optimizer.get("lr")}, weight_decay={optimizer.get("weight_decay")}) kept'
    else:
        delta['optimizer'] = dict(type='AdamW', lr=chosen.lr, betas=(0.9, 0.999), weight_decay=chosen.weight_decay)
        if 'optimizer' in wrapper:
            delta['optimizer'] = dict(_delete_=True, **delta['optimizer'])
        how = (f'AdamW (lr={chosen.lr}, weight_decay={chosen.weight_decay}) as the official ConvNeXt recipes (the host '
               f'had {optimizer.get("type")})')
    kept = [k for k in KEPT_PARAMWISE_KEYS if k in host_paramwise]
    plan.delta['optim_wrapper'] = delta
    plan.reasons['optim_wrapper'] = (
        f'{how}; {chosen.decay_type} decay {decay_rate} over {num_layers} layers'
        + (f'; the host\'s {", ".join(kept)} kept (an lr_mult on backbone multiplies the layer decay)' if kept else '')
        + ''.join(f'; {k} dropped: {WHY_DROPPED.get(k, "the layer-decay constructor does not take it")}'
                  for k in dropped)
        + '. The wrapper type, clip_grad and schedule stay the host\'s.')


def _set_fields(delta_model: dict, model, path: Tuple, values: dict) -> None:
    """Set ``values`` on the reader at ``path``; a list on the way is copied whole (configs replace lists whole)."""
    list_at = next((i for i, key in enumerate(path) if isinstance(key, int)), None)
    if list_at is None:
        node = delta_model
        for key in path:
            node = node.setdefault(key, {})
        node.update(values)
        return
    top = path[0]
    if top not in delta_model:
        delta_model[top] = plain(model[top])
    node = delta_model[top]
    for key in path[1:]:
        node = node[key]
    node.update(values)


def _literal(value, indent: int, width: int = 120) -> str:
    """Python source for a config value: ``dict(...)`` on one line when it fits, else one key per line."""
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            items = [f'{k}={_literal(v, indent + 4, 120 - len(k) - 1)}' for k, v in value.items()]
            one_line = f'dict({", ".join(items)})'
            if indent + len(one_line) <= width - 2 and '\n' not in one_line:
                return one_line
            pad = ' ' * (indent + 4)
            return 'dict(\n' + ',\n'.join(pad + item for item in items) + ')'
        return '{' + ', '.join(f'{k!r}: {_literal(v, indent + 4)}' for k, v in value.items()) + '}'
    if isinstance(value, (list, tuple)):
        items = [_literal(v, indent + 4, 120) for v in value]
        brackets = '()' if isinstance(value, tuple) else '[]'
        one_line = brackets[0] + ', '.join(items) + (',' if len(items) == 1 and brackets == '()' else '') + brackets[1]
        if indent + len(one_line) <= width - 2 and '\n' not in one_line:
            return one_line
        pad = ' ' * (indent + 4)
        return brackets[0] + '\n' + ',\n'.join(pad + item for item in items) + brackets[1]
    return repr(value)


def _wrap(text: str, width: int) -> List[str]:
    words, lines, line = text.split(), [], ''
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f'{line} {word}' if line else word
    return lines + ([line] if line else [])
