"""What an mmdet / mmseg model config reads from its backbone: the outputs, and the fields that hold their channels.

A host config hard-codes its backbone's outputs in the modules that read them: the neck (FPN's ``in_channels`` and
``start_level``, ``ChannelMapper``'s list, CenterNet's single integer) or, without a neck, the heads (mmseg's
``in_channels`` / ``in_index`` / ``c1_in_channels``, Mask2Former's ``in_channels`` and ``strides``). A :class:`Reader`
is one such module; its :class:`Rule` says which backbone outputs it reads and what its fields must hold for a given
set of outputs. :mod:`.swap` rewrites a host config with it; :mod:`.preflight` checks a hand-written one.

Rules are found by class name along the registered class's MRO, so subclasses (PAFPN of FPN, every mmseg decode head
of ``BaseDecodeHead``, mmseg's Mask2Former head of mmdet's) follow their parent's rule.
"""
import importlib
import inspect
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# Host backbones whose out_indices count stages of strides 4, 8, 16, 32 (ConvNeXt's stages 0-3), and those whose
# index 0 is a stride-2 stem (indices 1-4 are the stages).
HIERARCHICAL_BACKBONES = (
    'ResNet', 'ResNetV1c', 'ResNetV1d', 'ResNeXt', 'Res2Net', 'ResNeSt', 'RegNet', 'HRNet', 'SwinTransformer',
    'PyramidVisionTransformer', 'PyramidVisionTransformerV2', 'MixVisionTransformer', 'ConvNeXt', 'MSCAN', 'Twins',
    'PCPVT', 'SVT', 'PoolFormer', 'ResNetV1e', 'ResNet_CT')
STEM_FIRST_BACKBONES = ('CSPDarknet', 'CSPNeXt')
VIT_TIED = ('SETRUPHead', 'SETRMLAHead', 'DPTHead', 'MultiLevelNeck', 'MLANeck', 'Feature2Pyramid', 'SimpleFPN')
VIT_BACKBONES = ('VisionTransformer', 'MAE', 'BEiT', 'ViTDet', 'ViT')


class HostConfigError(ValueError):
    """A host config that cannot take ConvNeXt as it is; the message names the field and why."""


@dataclass(frozen=True)
class Output:
    """One backbone output: its ConvNeXt stage, channels and stride."""
    stage: int
    channels: int
    stride: int


@dataclass(frozen=True)
class Rule:
    """How one kind of module reads the backbone.

    ``reads(cfg, num_outputs)``: the positions it reads among the backbone's ``num_outputs`` outputs.
    ``fields(cfg, num_outputs, outputs, position)``: the values its fields must hold when the backbone returns
    ``outputs`` instead, where ``position`` maps each position it read before to the position of that stage in
    ``outputs``.
    """
    reads: Callable[[dict, int], Tuple[int, ...]]
    fields: Optional[Callable[[dict, int, Sequence[Output], Dict[int, int]], dict]]


@dataclass(frozen=True)
class Reader:
    """A module of the model config that reads the backbone's outputs."""
    path: Tuple  # keys from cfg.model to its dict: ('neck',), ('decode_head', 1), (..., 'kernel_generate_head')
    type: str
    cfg: dict
    rule: Rule
    note: str = ''  # why it reads other outputs than the host's, where it does

    @property
    def where(self) -> str:
        return '.'.join(['model', *map(str, self.path)])


def _list(cfg: dict, field: str) -> list:
    value = cfg.get(field)
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _all_inputs(cfg: dict, num_outputs: int) -> Tuple[int, ...]:
    return tuple(range(num_outputs))


def _channels_of_all(field: str = 'in_channels', strides: bool = False):
    def fields(cfg, num_outputs, outputs, position):
        values = {field: [o.channels for o in outputs]}
        if strides and 'strides' in cfg:
            values['strides'] = [o.stride for o in outputs]
        return values
    return fields


def _fpn_reads(cfg: dict, num_outputs: int) -> Tuple[int, ...]:
    end = cfg.get('end_level', -1)
    return tuple(range(cfg.get('start_level', 0), num_outputs if end == -1 else end + 1))


def _fpn_fields(cfg, num_outputs, outputs, position):
    read = _fpn_reads(cfg, num_outputs)
    last = position[read[-1]]
    return dict(in_channels=[o.channels for o in outputs], start_level=position[read[0]],
                end_level=-1 if last == len(outputs) - 1 else last)


def _last_reads(cfg: dict, num_outputs: int) -> Tuple[int, ...]:
    return (num_outputs - 1, )


def _last_fields(cfg, num_outputs, outputs, position):
    return dict(in_channels=outputs[position[num_outputs - 1]].channels)


def _decode_head_reads(cfg: dict, num_outputs: int) -> Tuple[int, ...]:
    reads = tuple(i + num_outputs if i < 0 else i for i in _list(cfg, 'in_index') if i is not None)
    reads = reads or (num_outputs - 1, )
    if cfg.get('c1_in_channels', 0):  # DepthwiseSeparableASPPHead: its c1 branch reads the first output itself
        reads += (0, )
    return reads


def _decode_head_fields(cfg, num_old, outputs, position):
    index = cfg.get('in_index', -1)
    if isinstance(index, (list, tuple)):
        new_index = [position[i % num_old] for i in index]
        values = dict(in_index=new_index, in_channels=[outputs[i].channels for i in new_index])
    else:
        values = dict(in_index=position[index % num_old], in_channels=outputs[position[index % num_old]].channels)
    if cfg.get('c1_in_channels', 0):
        values['c1_in_channels'] = outputs[position[0]].channels
    return values


def _enc_head_reads(cfg: dict, num_outputs: int) -> Tuple[int, ...]:
    """EncHead selects all of its ``in_index`` but reads only the last one, unless ``add_lateral`` (EncNet's default
    is off)."""
    index = [i % num_outputs for i in _list(cfg, 'in_index')]
    return tuple(index if cfg.get('add_lateral') else index[-1:])


def _enc_head_fields(cfg, num_old, outputs, position):
    if cfg.get('add_lateral'):
        return _decode_head_fields(cfg, num_old, outputs, position)
    last = position[_list(cfg, 'in_index')[-1] % num_old]
    return dict(in_index=[last], in_channels=[outputs[last].channels])


def _reads_output(index: int) -> Rule:
    """A single-input decode head made to read the host's output ``index`` instead of its own."""
    def reads(cfg, num_outputs):
        return (index % num_outputs, )

    def fields(cfg, num_old, outputs, position):
        new = position[index % num_old]
        return dict(in_index=new, in_channels=outputs[new].channels)
    return Rule(reads, fields)


def _vit_tied(cfg, num_outputs):
    raise HostConfigError(f'{cfg["type"]} is built for a plain ViT backbone (equal-width, single-stride feature maps '
                          'from several blocks), not for a hierarchical one; ConvNeXt cannot replace its backbone. '
                          'Take a host whose neck or heads read a feature pyramid (UperNet, FPN, Mask2Former)')


# The rule of each kind of reader, by class name (the first match along the registered class's MRO wins).
RULES: Dict[str, Rule] = {
    **{name: Rule(_vit_tied, None) for name in VIT_TIED},
    'FPN': Rule(_fpn_reads, _fpn_fields),  # mmdet's and mmseg's FPN, PAFPN, ...
    'ChannelMapper': Rule(_all_inputs, _channels_of_all()),  # DETR family: one to three outputs
    'YOLOXPAFPN': Rule(_all_inputs, _channels_of_all()),
    'CSPNeXtPAFPN': Rule(_all_inputs, _channels_of_all()),
    'CTResNetNeck': Rule(_last_reads, _last_fields),  # CenterNet
    'DilatedEncoder': Rule(_last_reads, _last_fields),  # YOLOF
    'MaskFormerHead': Rule(_all_inputs, _channels_of_all(strides=True)),  # and Mask2Former, mmdet's and mmseg's
    'EncHead': Rule(_enc_head_reads, _enc_head_fields),
    'BaseDecodeHead': Rule(_decode_head_reads, _decode_head_fields),  # every mmseg decode head
}


def registered_class(scope: str, type_name) -> Optional[type]:
    """The class a config's ``type`` names in the scope's registry (a class object passes through)."""
    if isinstance(type_name, type):
        return type_name
    registry = importlib.import_module(f'{scope}.registry').MODELS
    return registry.get(type_name)


def rule_for(scope: str, type_name) -> Optional[Rule]:
    cls = registered_class(scope, type_name)
    names = [c.__name__ for c in cls.__mro__] if cls is not None else [str(type_name)]
    return next((RULES[name] for name in names if name in RULES), None)


def host_value(scope: str, cfg: dict, key: str):
    """A field of a module config, or the default its class gives it when the config leaves it out."""
    if key in cfg:
        return cfg[key]
    cls = registered_class(scope, cfg.get('type'))
    parameter = inspect.signature(cls).parameters.get(key) if cls is not None else None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def scope_of(cfg) -> str:
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise HostConfigError(f"default_scope is {scope!r}; a host config is an mmdet or mmseg config, which sets "
                              "default_scope='mmdet' or 'mmseg' (through its _base_ default_runtime.py)")
    return scope


def readers(model: dict, scope: str) -> List[Reader]:
    """The modules of ``model`` that read the backbone's outputs: the (first) neck, or without one the heads."""
    neck = model.get('neck')
    if neck:
        path, node = (('neck', 0), neck[0]) if isinstance(neck, (list, tuple)) else (('neck', ), neck)
        return [_reader(path, node, scope)]
    found = []
    head_keys = ('decode_head', 'auxiliary_head') if scope == 'mmseg' else ('panoptic_head', 'bbox_head', 'rpn_head')
    for key in head_keys:
        heads = model.get(key)
        if isinstance(heads, dict):
            found.append(_reader((key, ), heads, scope))
        elif isinstance(heads, (list, tuple)):
            found.extend(_reader((key, i), head, scope) for i, head in enumerate(heads))
    if not found:
        raise HostConfigError(f'model ({model.get("type")}) has no neck and none of the heads '
                              f'{", ".join(head_keys)}: nothing says what it reads from its backbone')
    return _gather_at_one_stride(found, scope)


def _gather_at_one_stride(found: List[Reader], scope: str) -> List[Reader]:
    """OCRHead gathers its input's pixels by the previous decode heads' output (a matrix product over pixels), so in a
    cascade they must read maps of one size. A dilated host (ResNet-d8) has C4 and C5 both at stride 8, ConvNeXt's
    stages 2 and 3 are at 16 and 32: the single-input heads before OCRHead read OCRHead's input instead."""
    decode = [r for r in found if r.path[0] == 'decode_head' and len(r.path) == 2]
    for i, reader in enumerate(decode):
        cls = registered_class(scope, reader.cfg.get('type'))
        index = host_value(scope, reader.cfg, 'in_index')
        if cls is None or 'OCRHead' not in [c.__name__ for c in cls.__mro__] or not isinstance(index, int):
            continue
        for earlier in decode[:i]:
            own = host_value(scope, earlier.cfg, 'in_index')
            if isinstance(own, int) and own != index:
                note = (f'it reads the input of {reader.where} (OCRHead), which gathers that input by its output pixel '
                        f'by pixel: both need one stride (the host\'s outputs {own} and {index} share one, ConvNeXt\'s '
                        'stages do not)')
                found[found.index(earlier)] = Reader(earlier.path, earlier.type, earlier.cfg, _reads_output(index),
                                                     note)
    return found


def _reader(path: Tuple, node: dict, scope: str) -> Reader:
    if node.get('type') == 'IterativeDecodeHead':  # K-Net: its kernel generating head reads the backbone
        return _reader(path + ('kernel_generate_head', ), node['kernel_generate_head'], scope)
    rule = rule_for(scope, node.get('type'))
    if rule is None:
        where = '.'.join(['model', *map(str, path)])
        hint = (' (a C4 model: its RoI head embeds a ResNet stage)' if path == ('rpn_head', ) else '')
        raise HostConfigError(f'{where} ({node.get("type")}) reads the backbone, and it is not known which outputs it '
                              f'reads{hint}; supported readers: {", ".join(sorted(set(RULES) - set(VIT_TIED)))} '
                              '(and their subclasses)')
    return Reader(path, str(node.get('type')), node, rule)


def host_stages(backbone: dict, scope: str) -> Tuple[int, ...]:
    """The ConvNeXt stage (0-3: strides 4-32) of each output of a host backbone, from its type and ``out_indices``."""
    name = backbone.get('type')
    name = name.__name__ if isinstance(name, type) else str(name)
    if name in VIT_BACKBONES:
        raise HostConfigError(f'the host backbone {name} is a plain ViT (one stride, equal widths); its neck and heads '
                              'are built for that, not for a hierarchical backbone such as ConvNeXt')
    out_indices = backbone.get('out_indices')
    if out_indices is None:
        cls = registered_class(scope, name)
        if cls is None or 'out_indices' not in inspect.signature(cls).parameters:
            raise HostConfigError(f'model.backbone ({name}) has no out_indices; it is not known which stages it '
                                  'returns')
        out_indices = inspect.signature(cls).parameters['out_indices'].default
    out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
    if name in STEM_FIRST_BACKBONES:
        stages = [i - 1 for i in out_indices]
    elif name in HIERARCHICAL_BACKBONES:
        stages = list(out_indices)
    else:
        raise HostConfigError(f'model.backbone is {name}; it is not known which strides its out_indices '
                              f'{tuple(out_indices)} stand for (known: {", ".join(HIERARCHICAL_BACKBONES)}; '
                              f'{", ".join(STEM_FIRST_BACKBONES)} with a stem at index 0)')
    stages = [s % 4 if s < 0 else s for s in stages]
    if any(not 0 <= s <= 3 for s in stages):
        raise HostConfigError(f'model.backbone ({name}) returns out_indices {tuple(out_indices)}, beyond the strides '
                              '4-32 that ConvNeXt stages have')
    return tuple(stages)
