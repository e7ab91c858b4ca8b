"""Convert a ConvNeXt checkpoint from others into this package's format, once, as a file that loads weights-only.

A backbone (official, mmpretrain, timm or Hugging Face layout) becomes ``state_dict`` with the backbone's own keys
(the official layout: ``downsample_layers.i``, ``stages.i.j``) and ``meta`` (source file and format), the
classification head dropped: a file for ``init_cfg=dict(type='Pretrained', checkpoint=...)``. A whole detector or
segmentor (official mmdet 2.x / mmseg 0.x releases, mmdet / mmseg model-zoo files, Hugging Face UperNet) becomes
``state_dict`` under our configs' names and ``meta.dataset_meta`` (its classes), the layout mmdet 3.x / mmseg 1.x
write, which their stock tools load into our configs.
"""
import os
import os.path as osp

import torch

from .backbone import LoadReport, backbone_prefix, to_backbone_state_dict
from .reading import CheckpointError
from .whole_model import ModelLoadReport, read_model_checkpoint, to_model_state_dict


def convert(src: str, dst: str) -> LoadReport:
    """Write ``src`` (a file, or a Hugging Face save_pretrained folder) converted to ``dst``; the report of what was
    converted (a :class:`ModelLoadReport` for a whole model). Raises :class:`CheckpointError` for what cannot be
    converted, and before overwriting ``src``."""
    if osp.abspath(src) == osp.abspath(dst):
        raise CheckpointError(f'{dst}: the output would overwrite the input; give another path')
    tensors, meta = read_model_checkpoint(src)
    if backbone_prefix(tensors) == 'backbone.':
        report = ModelLoadReport(source=src, format='unknown')
        state_dict = to_model_state_dict(tensors, meta, report)
        out_meta = dict(source=osp.basename(src), format=report.format, dataset_meta=report.dataset_meta)
    else:
        report = LoadReport(source=src, format='unknown')
        state_dict = to_backbone_state_dict(tensors, report)
        out_meta = dict(source=osp.basename(src), format=report.format)
    report.loaded = sorted(state_dict)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=out_meta), dst)
    return report
