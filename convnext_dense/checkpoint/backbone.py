"""Loading ConvNeXt backbone weights from checkpoints in the official, mmpretrain, timm and Hugging Face layouts, and
isotropic ConvNeXt weights in the official isotropic layout.

Our backbone uses the official layout, so each foreign format is one table of renames onto it. Loading reports what
loaded, what was dropped on purpose (classification heads), what is missing and what was unexpected, and raises when
the backbone's weights are not in the file at all, when shapes do not match, or when the file cannot be read.

The classifier's final LayerNorm (official ``norm.*``, timm ``head.norm.*``) normalises pooled features; the official
detection and segmentation code does not use it, and leaves the last output norm (``norm3``) at its fresh
initialisation. So do we, and the report says so. mmpretrain checkpoints name that norm ``norm3`` and mmdet/mmseg load
it there, so from them it is loaded. The official isotropic classifiers (``models/convnext_isotropic.py``: ``stem``,
``blocks.i``, ``norm``, ``head``) have the same final norm, unused alike: the isotropic backbone's output norms
(``norm{i}``, one per output block) start fresh.
"""
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from mmengine.logging import print_log

from ..utils import first_n
from .reading import CheckpointError, resolve_weights_file, safe_load, unwrap_state_dict

# The layout of our backbone's state_dict; a backbone class says it takes it with
# ``checkpoint_layout = OFFICIAL_LAYOUT``.
OFFICIAL_LAYOUT = 'official'
# ... and of the isotropic ConvNeXt (``checkpoint_layout = ISOTROPIC_LAYOUT``), which only takes that layout.
ISOTROPIC_LAYOUT = 'official_isotropic'
# (pattern, replacement) applied in order (a re.sub replacement); None drops the key (a classification head, on
# purpose).
Renames = List[Tuple[str, Union[None, str, Callable]]]
KEY_MAPS: Dict[str, Renames] = {
    'official': [
        (r'^head\.', None),
        # FCMAE pre-training's sparse encoder (MinkowskiEngine) wraps LayerNorm / Linear as `.ln` / `.linear` and names
        # conv weights `kernel` (their values are made dense by _dense_kernel)
        (r'\.(ln|linear)\.', '.'),
        (r'\.kernel$', '.weight'),
    ],
    # facebookresearch/ConvNeXt models/convnext_isotropic.py: our isotropic backbone's own names
    ISOTROPIC_LAYOUT: [
        (r'^head\.', None),
    ],
    'mmpretrain': [
        (r'^head\.', None),
        (r'\.depthwise_conv\.', '.dwconv.'),
        (r'\.pointwise_conv1\.', '.pwconv1.'),
        (r'\.pointwise_conv2\.', '.pwconv2.'),
    ],
    'timm': [
        (r'^head\.fc\.', None),
        (r'^norm_pre\.', None),
        # `stem_0`, `stages_0`: the flattened names of timm's features_only models
        (r'^stem[._]', 'downsample_layers.0.'),
        (r'^stages[._](\d+)\.downsample\.', r'downsample_layers.\1.'),
        (r'^stages[._](\d+)\.blocks\.', r'stages.\1.'),
        (r'\.conv_dw\.', '.dwconv.'),
        (r'\.mlp\.fc1\.', '.pwconv1.'),
        (r'\.mlp\.fc2\.', '.pwconv2.'),
        (r'\.mlp\.grn\.weight$', '.grn.gamma'),
        (r'\.mlp\.grn\.bias$', '.grn.beta'),
    ],
    # transformers' ConvNextModel / ConvNextV2Model (classification) and ConvNextBackbone (inside
    # UperNetForSemanticSegmentation, with an output norm per stage), once the model prefix is removed
    'huggingface': [
        (r'^classifier\.', None),
        (r'^embeddings\.patch_embeddings\.', 'downsample_layers.0.0.'),
        (r'^embeddings\.layernorm\.', 'downsample_layers.0.1.'),
        (r'^encoder\.stages\.(\d+)\.downsampling_layer\.', r'downsample_layers.\1.'),
        (r'^encoder\.stages\.(\d+)\.layers\.', r'stages.\1.'),
        (r'\.layernorm\.', '.norm.'),
        (r'\.layer_scale_parameter$', '.gamma'),
        (r'\.grn\.weight$', '.grn.gamma'),
        (r'\.grn\.bias$', '.grn.beta'),
        (r'^hidden_states_norms\.stage(\d)\.', lambda m: f'norm{int(m.group(1)) - 1}.'),
    ],
}
# The classifier's final norm, which the official dense-prediction code leaves unused (see the module docstring).
CLASSIFIER_NORM = {'official': re.compile(r'^norm\.'), 'timm': re.compile(r'^head\.norm\.'),
                   'huggingface': re.compile(r'^layernorm\.'), ISOTROPIC_LAYOUT: re.compile(r'^norm\.')}
# The backbone inside a detector or segmentor, or the encoder of an FCMAE pre-training checkpoint (official
# ConvNeXt-V2 main_pretrain.py): everything else (necks, heads; decoder, mask_token, proj, pred) is ignored and
# reported.
BACKBONE_PREFIXES = ('backbone.', 'encoder.')
# Hugging Face names the backbone after the model (``convnext.``, ``convnextv2.``, ``backbone.`` in UperNet), and its
# ``encoder.`` is a part of it, not an FCMAE encoder: the backbone is whatever precedes ``embeddings.patch_embeddings``.
HF_STEM = re.compile(r'^(.*?)embeddings\.patch_embeddings\.')
# Output norms absent from classification checkpoints are expected: they start as identity LayerNorms.
OPTIONAL_KEY = re.compile(r'^norm\d+\.')


@dataclass
class LoadReport:
    source: str
    format: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    dropped_head: List[str] = field(default_factory=list)
    unused_classifier_norm: List[str] = field(default_factory=list)
    ignored_non_backbone: List[str] = field(default_factory=list)
    fresh_norms: List[str] = field(default_factory=list)

    def summary(self) -> str:
        return format_report(f'ConvNeXt: loaded {len(self.loaded)} tensors from {self.source} ({self.format} format)',
                             (('MISSING from the checkpoint (left at their initial values)', self.missing),
                              ('UNEXPECTED in the checkpoint (not loaded)', self.unexpected),
                              ('classification head, dropped', self.dropped_head),
                              ("the classifier's final norm, not used (as in the official detection and "
                               'segmentation code)', self.unused_classifier_norm),
                              ('output norms not in the checkpoint, at their fresh initialisation', self.fresh_norms),
                              ('outside the backbone, ignored', self.ignored_non_backbone)))


def format_report(headline: str, sections, depth: int = 2) -> str:
    """A load report: the headline, then a line per non-empty (label, keys) section, the keys abbreviated."""
    return '\n'.join([headline, *(f'  {label}: {len(keys)}: {abbreviate(keys, depth=depth)}'
                                   for label, keys in sections if keys)])


def takes_official_layout(module) -> bool:
    """Whether ``module`` is a backbone that keeps the official ConvNeXt key layout (ours), so that checkpoints in
    the other layouts are mapped onto it; told by its class, so that loaders need not import the models."""
    return getattr(module, 'checkpoint_layout', None) == OFFICIAL_LAYOUT


def detect_format(state_dict: Dict[str, torch.Tensor]) -> str:
    keys = list(state_dict)
    if any(k.startswith('embeddings.patch_embeddings.') for k in keys):
        return 'huggingface'
    if any(k.startswith('blocks.') for k in keys):  # before timm's `stem.`: the isotropic stem is `stem.weight`
        return ISOTROPIC_LAYOUT
    if any(k.startswith(('stem.', 'stem_')) or '.blocks.' in k for k in keys):
        return 'timm'
    if any('.depthwise_conv.' in k for k in keys):
        return 'mmpretrain'
    if any('.dwconv.' in k for k in keys) and any(k.startswith('downsample_layers.') for k in keys):
        return 'official'
    raise CheckpointError('not a ConvNeXt checkpoint in a known format (official, mmpretrain, timm, Hugging Face or '
                          'official isotropic); '
                          f'its first keys are {keys[:5]}')


def backbone_prefix(state_dict: Dict[str, torch.Tensor]) -> str:
    """The prefix of the backbone's keys in the checkpoint of a whole model, '' for a bare backbone."""
    hf_prefix = next((m.group(1) for m in map(HF_STEM.match, state_dict) if m), None)
    if hf_prefix is not None:
        return hf_prefix
    return next((p for p in BACKBONE_PREFIXES if any(k.startswith(p) for k in state_dict)), '')


def to_backbone_state_dict(checkpoint: dict, report: LoadReport) -> Dict[str, torch.Tensor]:
    """Unwrap (``state_dict``/``model``/...), strip ``module.``/``backbone.`` prefixes, detect the format, rename."""
    state_dict = unwrap_state_dict(checkpoint)
    prefix = backbone_prefix(state_dict)
    if prefix:
        report.ignored_non_backbone = sorted(k for k in state_dict if not k.startswith(prefix))
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    report.format = detect_format(state_dict)
    converted = {}
    classifier_norm = CLASSIFIER_NORM.get(report.format)
    for key, value in state_dict.items():
        if classifier_norm is not None and classifier_norm.match(key):
            report.unused_classifier_norm.append(key)
            continue
        if key.endswith('.kernel'):
            value = _dense_kernel(value)
        new_key = rename(key, KEY_MAPS[report.format])
        if new_key is None:
            report.dropped_head.append(key)
        else:
            converted[new_key] = value
    return converted


def load_pretrained(model: torch.nn.Module, path: str, weights_only: bool = True, map_location='cpu',
                    logger='current') -> LoadReport:
    """Load a checkpoint of any supported format into ``model`` (our ConvNeXt) and log what happened."""
    report = LoadReport(source=str(path), format='unknown')
    checkpoint = safe_load(resolve_weights_file(path), weights_only, map_location)
    try:
        state_dict = to_backbone_state_dict(checkpoint, report)
    except CheckpointError as exc:
        raise CheckpointError(f'{path}: {exc}') from None
    check_layout_family(model, report)
    load_state_dict(model, state_dict, report)
    level = logging.WARNING if report.missing or report.unexpected else logging.INFO
    print_log(report.summary(), logger=logger, level=level)
    return report


def check_layout_family(model: torch.nn.Module, report: LoadReport) -> None:
    """Refuse a hierarchical ConvNeXt checkpoint for the isotropic backbone and the other way round, naming both."""
    isotropic_model = getattr(model, 'checkpoint_layout', OFFICIAL_LAYOUT) == ISOTROPIC_LAYOUT
    isotropic_file = report.format == ISOTROPIC_LAYOUT
    if isotropic_model != isotropic_file:
        kinds = ('an isotropic ConvNeXt checkpoint (stem, blocks.i)', 'a hierarchical ConvNeXt checkpoint')
        raise CheckpointError(f'{report.source}: {kinds[not isotropic_file]} ({report.format} format) cannot '
                              f'initialise {type(model).__name__}; use '
                              f'{"ConvNeXtIsotropic" if isotropic_file else "ConvNeXt"} for it')


def load_state_dict(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], report: LoadReport) -> None:
    """Copy matching tensors into ``model``; raise on shape mismatches or when nothing of the backbone is there."""
    own = model.state_dict()
    to_load, mismatched, _ = sort_by_fit(state_dict, own, report)
    if mismatched:
        raise CheckpointError(f'{report.source}: {len(mismatched)} tensors do not fit the model, e.g. '
                              f'{"; ".join(mismatched[:3])}. The checkpoint is for another architecture'
                              f'{arch_hint(state_dict, getattr(model, "arch_settings", {}))}; set the backbone '
                              'arch/version/in_channels to match it')
    if not any(not OPTIONAL_KEY.match(k) for k in to_load):
        raise CheckpointError(f'{report.source}: none of the backbone weights were found in the checkpoint '
                              f'({report.format} format, keys like {list(state_dict)[:3]}); refusing to go on with '
                              'a randomly initialised backbone')
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    report.missing = sorted(k for k in own if k not in to_load and not OPTIONAL_KEY.match(k))
    report.fresh_norms = sorted(k for k in own if k not in to_load and OPTIONAL_KEY.match(k))


def sort_by_fit(state_dict: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor], report: LoadReport,
                set_aside: Callable[[str], bool] = lambda key: False) -> Tuple[dict, List[str], dict]:
    """(tensors to load, descriptions of those whose shape does not fit, mismatched ones that ``set_aside`` picks)
    of ``state_dict`` against the model's ``own``; keys the model lacks go to ``report.unexpected``. Shapes equal but
    for ones fit: (1,1,1,C) GRN parameters, 1x1-conv MLP weights."""
    to_load, mismatched, aside = {}, [], {}
    for key, value in state_dict.items():
        if key not in own:
            report.unexpected.append(key)
        elif value.shape == own[key].shape:
            to_load[key] = value
        elif squeezed(value.shape) == squeezed(own[key].shape):
            to_load[key] = value.reshape(own[key].shape)
        elif set_aside(key):
            aside[key] = value
        else:
            mismatched.append(f'{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}')
    return to_load, mismatched, aside


def rename(key: str, rules: Renames) -> Optional[str]:
    for pattern, replacement in rules:
        if re.search(pattern, key):
            if replacement is None:
                return None
            key = re.sub(pattern, replacement, key)
    return key


def _dense_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """A MinkowskiEngine conv kernel, (k*k, C) depthwise or (k*k, in, out), as a Conv2d weight, as the official
    ConvNeXt-V2 fine-tuning does it (utils.remap_checkpoint_keys)."""
    size = math.isqrt(kernel.shape[0])
    if kernel.ndim == 2:
        return kernel.t().reshape(kernel.shape[1], 1, size, size).transpose(2, 3)
    return kernel.permute(2, 1, 0).reshape(kernel.shape[2], kernel.shape[1], size, size).transpose(2, 3)


def squeezed(shape: torch.Size) -> tuple:
    return tuple(s for s in shape if s != 1)


def arch_hint(state_dict: Dict[str, torch.Tensor], archs: Dict[str, dict]) -> str:
    """The arch the checkpoint looks like, among ``archs`` (the model's ``arch_settings``) or as depths/dims (an
    isotropic one: depth/dim)."""
    if 'blocks.0.dwconv.weight' in state_dict:
        depth = len({k.split('.')[1] for k in state_dict if k.startswith('blocks.')})
        dim = state_dict['blocks.0.dwconv.weight'].shape[0]
        names = [name for name, arch in archs.items() if (arch.get('depth'), arch.get('dim')) == (depth, dim)]
        return f' (it looks like arch={names[0] if names else dict(depth=depth, dim=dim)!r})'
    dims = tuple(state_dict[f'stages.{i}.0.dwconv.weight'].shape[0] for i in range(4)
                 if f'stages.{i}.0.dwconv.weight' in state_dict)
    depths = tuple(len({k.split('.')[2] for k in state_dict if k.startswith(f'stages.{i}.')}) for i in range(4))
    names = [name for name, arch in archs.items() if arch.get('dims') == dims and arch.get('depths') == depths]
    version = 2 if any('.grn.' in k for k in state_dict) else 1
    arch = names[0] if names else f'dict(depths={list(depths)}, dims={list(dims)})'
    return f' (it looks like arch={arch!r}, version={version})'


def abbreviate(keys: List[str], limit: int = 8, depth: int = 2) -> str:
    """Group keys by their first ``depth`` dotted parts so long lists stay readable."""
    groups: Dict[str, int] = {}
    for key in keys:
        group = '.'.join(key.split('.')[:depth])
        groups[group] = groups.get(group, 0) + 1
    return first_n((f'{g}.* ({n})' if n > 1 else g for g, n in groups.items()), limit)
