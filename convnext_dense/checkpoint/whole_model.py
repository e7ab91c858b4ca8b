"""Loading trained detectors and segmentors, whole, from the layouts ConvNeXt dense models are released in.

- convnext-dense and the official ConvNeXt releases (mmdet 2.x Mask R-CNN / Cascade Mask R-CNN, mmseg 0.x UperNet):
  the backbone in the official layout, which is ours; mmdet 3.x / mmseg 1.x kept the head names of mmdet 2.x /
  mmseg 0.x, so the heads load as they are. The old ``meta`` holds ``CLASSES`` (and ``PALETTE``), the new
  ``dataset_meta``.
- mmdet's and mmseg's model zoos: mmpretrain's ConvNeXt inside (its layout is mapped by
  :mod:`convnext_dense.checkpoint.backbone`), mmdet/mmseg heads.
- Hugging Face ``UperNetForSemanticSegmentation`` with a ``ConvNextBackbone``: a folder of ``save_pretrained``
  (``model.safetensors`` or ``pytorch_model.bin``, and ``config.json`` for the class names) or one of those files.

A checkpoint that does not fit is an error naming what does not fit and the fix, never a half-random model: another
architecture or size, heads for another number of classes (unless fine-tuning, where the class layers start fresh
and the report says so), missing parts, a backbone-only file given as a whole model.
"""
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log

from .backbone import (
    LoadReport,
    Renames,
    abbreviate,
    arch_hint,
    backbone_prefix,
    format_report,
    rename,
    sort_by_fit,
    takes_official_layout,
    to_backbone_state_dict,
)
from .reading import HF_WEIGHT_FILES, CheckpointError, resolve_weights_file, unwrap_state_dict

# Head renames, by the layout of the backbone (which tells the framework); layouts not listed name their heads as we do.
HEAD_KEY_MAPS: Dict[str, Renames] = {
    # transformers' UperNetHead / UperNetFCNHead: ConvModules with `batch_norm`, the classifier conv `classifier`
    'huggingface': [
        (r'\.batch_norm\.', '.bn.'),
        (r'^(decode_head|auxiliary_head)\.classifier\.', r'\1.conv_seg.'),
    ],
}
# Layers whose size depends on the number of classes: box classifier and class-specific regression (mmdet BBoxHead),
# mask logits (FCNMaskHead), the class convs of single-stage heads, and mmseg's classifier.
CLASS_LAYER = re.compile(r'^(?P<head>.+)\.(?P<layer>fc_cls|fc_reg|conv_logits|conv_cls|retina_cls|conv_seg)\.'
                         r'(weight|bias)$')
# Layers whose count of outputs is the number of classes plus a constant (fc_cls: plus background).
CLASS_COUNTING_LAYERS = ('fc_cls', 'conv_logits', 'conv_cls', 'retina_cls', 'conv_seg')


@dataclass
class ModelLoadReport(LoadReport):
    """What loading a whole model did: the layout found, what loaded, and what did not and why."""
    backbone_format: str = ''
    new_class_layers: List[str] = field(default_factory=list)
    missing_unused_at_test: List[str] = field(default_factory=list)
    dataset_meta: dict = field(default_factory=dict)

    def summary(self) -> str:
        classes = self.dataset_meta.get('classes')
        return format_report(
            f'loaded {len(self.loaded)} tensors from {self.source} ({self.format}; backbone in the '
            f'{self.backbone_format} layout{f"; {len(classes)} classes" if classes else ""})',
            (('UNEXPECTED in the checkpoint (not loaded)', self.unexpected),
             ("class layers left at their initial values for the config's classes (fine-tuning on new classes)",
              self.new_class_layers),
             ('MISSING from the checkpoint (auxiliary head: not used at test time; trained from scratch when '
              'fine-tuning)', self.missing_unused_at_test),
             ('classification head of the pretraining, dropped', self.dropped_head),
             ("the classifier's final norm, not used", self.unused_classifier_norm)), depth=4)


def load_checkpoint(model: torch.nn.Module, filename: str, new_classes: bool = False, map_location='cpu',
                    logger='current', model_cfg: Optional[dict] = None) -> ModelLoadReport:
    """Load a trained detector or segmentor of any supported layout into ``model`` (built from one of our configs,
    or any mmdet/mmseg config) and log what happened.

    ``new_classes``: the model is being fine-tuned on other classes than the checkpoint's, so its class layers may
    differ in size; they keep their initial values and the report lists them. Otherwise that is an error.
    Files are read weights-only (through mmengine's loader, which ``import convnext_dense`` makes weights-only).
    ``model_cfg``: the config ``model`` was built from, for the ``--cfg-options`` keys that errors give.
    """
    state_dict, meta = read_model_checkpoint(filename, map_location)
    report = ModelLoadReport(source=str(filename), format='unknown')
    converted = to_model_state_dict(state_dict, meta, report,
                                    convnext_backbone=takes_official_layout(getattr(model, 'backbone', None)))
    load_into(model, converted, report, new_classes, model_cfg)
    level = logging.WARNING if report.unexpected or report.new_class_layers or report.missing_unused_at_test \
        else logging.INFO
    print_log(report.summary(), logger=logger, level=level)
    return report


def read_model_checkpoint(filename: str, map_location='cpu') -> Tuple[Dict[str, torch.Tensor], dict]:
    """(tensors, meta) of a checkpoint file, or of a Hugging Face ``save_pretrained`` folder or weights file (whose
    ``config.json`` beside it becomes ``meta['hf_config']``)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    path = Path(resolve_weights_file(filename))
    checkpoint = CheckpointLoader.load_checkpoint(str(path), map_location=map_location, logger='silent')
    meta = dict(checkpoint['meta']) if isinstance(checkpoint, dict) and isinstance(checkpoint.get('meta'), dict) else {}
    hf_config = path.with_name('config.json')
    if path.name in HF_WEIGHT_FILES and hf_config.is_file():
        meta['hf_config'] = json.loads(hf_config.read_text())
    return unwrap_state_dict(checkpoint), meta


def to_model_state_dict(state_dict: Dict[str, torch.Tensor], meta: dict, report: ModelLoadReport,
                        convnext_backbone: bool = True) -> Dict[str, torch.Tensor]:
    """The checkpoint's tensors under our model's names: a ConvNeXt backbone mapped from its layout (another
    backbone, such as the Swin twins', is taken as it is), the heads renamed; fills ``report``."""
    prefix = backbone_prefix(state_dict)
    if prefix != 'backbone.':
        raise CheckpointError(
            f'{report.source}: this is a backbone checkpoint (pretraining weights, keys like {list(state_dict)[:3]}), '
            'not a whole detector or segmentor. Use it to initialise the backbone: '
            f'--cfg-options model.backbone.init_cfg.checkpoint={report.source} (or init_cfg=dict(type=\'Pretrained\', '
            'checkpoint=...) in the config), and train; give tools/test.py a trained model')
    if convnext_backbone:
        backbone_report = LoadReport(source=report.source, format='unknown')
        converted = {'backbone.' + k: v for k, v in to_backbone_state_dict(state_dict, backbone_report).items()}
        report.backbone_format = backbone_report.format
        report.dropped_head = backbone_report.dropped_head
        report.unused_classifier_norm = backbone_report.unused_classifier_norm
    else:
        converted = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
        report.backbone_format = 'own'
    head_renames = HEAD_KEY_MAPS.get(report.backbone_format, [])
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            converted[rename(key, head_renames)] = value
    report.format = describe_layout(report.backbone_format, meta)
    report.dataset_meta = dataset_meta(meta)
    return converted


def load_into(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], report: ModelLoadReport,
              new_classes: bool, model_cfg: Optional[dict] = None) -> None:
    """Copy ``state_dict`` into ``model`` after checking that it fits: raises :class:`CheckpointError` naming the
    tensors that do not and the fix."""
    own = model.state_dict()
    to_load, mismatched, class_layers = sort_by_fit(state_dict, own, report, set_aside=CLASS_LAYER.match)
    if mismatched:
        backbone = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
        hint = arch_hint(backbone, getattr(getattr(model, 'backbone', None), 'arch_settings', {})) \
            if any(m.startswith('backbone.') for m in mismatched) else ''
        raise CheckpointError(
            f'{report.source}: {len(mismatched)} tensors do not fit the model, e.g. {"; ".join(mismatched[:3])}. '
            f'The checkpoint ({report.format}) is for another architecture or size{hint}: use the config it was '
            'trained with (see the model zoo table in the README), or set the backbone arch and head channels to '
            'match it')
    missing = [k for k in own if k not in to_load and k not in class_layers and not k.endswith('num_batches_tracked')]
    report.missing_unused_at_test = [k for k in missing if k.startswith('auxiliary_head.')]
    missing = [k for k in missing if not k.startswith('auxiliary_head.')]
    if missing:
        raise CheckpointError(
            f'{report.source}: the checkpoint ({report.format}) has no weights for {len(missing)} tensors of the '
            f'model: {abbreviate(missing, depth=3)}. It is a checkpoint of another model (e.g. a Mask R-CNN given to a '
            'Cascade Mask R-CNN config, or a detector without masks); use the config it was trained with')
    if class_layers and not new_classes:
        raise CheckpointError(_class_mismatch_message(model, own, class_layers, report, model_cfg))
    report.new_class_layers = sorted(class_layers)
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)


def describe_layout(backbone_format: str, meta: dict) -> str:
    """Where a whole-model checkpoint comes from, as far as its backbone layout and meta tell: mmdet 2.x / mmseg 0.x
    (``CLASSES`` in meta) or 3.x / 1.x; mmpretrain's (or mmcls') ConvNeXt in the zoos' files, the official one in the
    official releases and ours."""
    if backbone_format == 'huggingface':
        return 'Hugging Face UperNetForSemanticSegmentation'
    version = meta.get('mmdet_version') or meta.get('mmseg_version')
    old = 'CLASSES' in meta or bool(version and str(version)[0] in '02')
    framework = ('mmseg 0.x' if 'mmseg_version' in meta else 'mmdet 2.x') if old else 'mmdet 3.x / mmseg 1.x'
    if backbone_format == 'mmpretrain':
        return f"{framework} model-zoo checkpoint (mmpretrain's / mmcls' ConvNeXt)"
    return f'{framework} checkpoint' + (' (the official ConvNeXt releases)' if old else '')


def dataset_meta(meta: dict) -> dict:
    """Class names (and palette) as the checkpoint records them: mmengine's ``dataset_meta``, mmdet 2.x / mmseg
    0.x's ``CLASSES`` / ``PALETTE``, or a Hugging Face config's ``id2label``."""
    if isinstance(meta.get('dataset_meta'), dict):
        return {k.lower(): v for k, v in meta['dataset_meta'].items()}
    if meta.get('CLASSES'):
        found = {'classes': tuple(meta['CLASSES'])}
        if meta.get('PALETTE'):
            found['palette'] = [tuple(c) for c in meta['PALETTE']]
        return found
    id2label = (meta.get('hf_config') or {}).get('id2label')
    if id2label:
        return {'classes': tuple(label for _, label in sorted((int(i), label) for i, label in id2label.items()))}
    return {}


def _class_mismatch_message(model, own, class_layers, report, model_cfg) -> str:
    heads: Dict[str, Tuple[int, Optional[int]]] = {}
    for key, value in class_layers.items():
        match = CLASS_LAYER.match(key)
        if match['layer'] in CLASS_COUNTING_LAYERS and key.endswith('.weight'):
            model_classes = getattr(model.get_submodule(match['head']), 'num_classes', None)
            if model_classes is not None:
                heads[match['head']] = (model_classes, model_classes + value.shape[0] - own[key].shape[0])
    keys = {_config_key(model_cfg, head): n for head, (_, n) in heads.items()}
    fix = ' '.join(f'model.{key}.num_classes={n}' for key, n in keys.items())
    described = '; '.join(f'{head}: {m} in the model, {n} in the checkpoint' for head, (m, n) in heads.items())
    names = report.dataset_meta.get('classes')
    return (f'{report.source}: the checkpoint\'s heads are for another number of classes ({described or "class "}'
            f'{"" if described else "layers " + abbreviate(sorted(class_layers))}). To evaluate or run it, give the '
            f'config the checkpoint\'s classes: --cfg-options {fix or "model.<head>.num_classes=N"}'
            + (f' and the data set\'s metainfo.classes ({len(names)} classes, {names[:3]}...)' if names else '')
            + '. To fine-tune it on your own classes, keep your num_classes and give it to tools/train.py as '
            'load_from (the class layers then start fresh)')


def _config_key(model_cfg: Optional[dict], module_path: str) -> str:
    """The config key of a module: a head given once as a dict for every cascade stage is built as a list of modules
    (``roi_head.mask_head.0``), but set through the dict (``roi_head.mask_head``)."""
    if model_cfg is None:
        return module_path
    parts, node = [], model_cfg
    for part in module_path.split('.'):
        if part.isdigit() and isinstance(node, list):
            node = node[int(part)]
        elif part.isdigit():
            continue
        else:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        parts.append(part)
    return '.'.join(parts)
