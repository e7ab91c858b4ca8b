"""The H100 measurements that ``tools/analysis_tools/benchmark_memory.py --estimate --validate`` checks its CPU estimates against.

Source: ../shared/ANCHORS.md, "Measured here": one H100, torch 2.11, OneDL mmdet 3.5.1, AMP fp16, batch 2, 800x1344,
7 synthetic boxes+masks per image, peak allocated memory of a steady-state training step. The configs are mmdet's own
(mmpretrain's ConvNeXt; ConvNeXt-B as a delta over mmdet's S config, which mmdet lacks) and mmdet's Swin in the same
Cascade heads (configs/cascade_rcnn/swin_*_3x.py). Tolerances: each estimate within 5% of its anchor, and each
ConvNeXt/Swin ratio within 0.02 of the anchors' ratio. The estimates take the anchors as one GPU of a distributed run
(DDP's gradient buckets held): the measuring script is not in ANCHORS.md, but without the buckets every estimate
falls short by about one float32 copy of the parameters (4 bytes each, all seven within 1.1% with them).
"""
from pathlib import Path
from typing import Dict, List

MAX_ERROR = 0.05
MAX_RATIO_ERROR = 0.02
ROOT = Path(__file__).resolve().parents[2]
MMDET_CASCADE_T = 'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
MMDET_CASCADE_S = 'mmdet::convnext/cascade-mask-rcnn_convnext-s-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
CASCADE_B_DELTA = ("model = dict(backbone=dict(arch='base', drop_path_rate=0.7),\n"
                   "             neck=dict(in_channels=[128, 256, 512, 1024]))\n")

# name: (base config, delta appended to it, measured peak allocated GiB, Swin counterpart for the ratio)
ANCHORS: Dict[str, tuple] = {
    'cascade_convnext_t': (MMDET_CASCADE_T, '', 5.22, 'cascade_swin_t'),
    'cascade_swin_t': (str(ROOT / 'configs/cascade_rcnn/swin_t_3x.py'), '', 5.68, None),
    'cascade_convnext_s': (MMDET_CASCADE_S, '', 6.95, 'cascade_swin_s'),
    'cascade_swin_s': (str(ROOT / 'configs/cascade_rcnn/swin_s_3x.py'), '', 7.76, None),
    'cascade_convnext_b': (MMDET_CASCADE_S, CASCADE_B_DELTA, 8.89, 'cascade_swin_b'),
    'cascade_swin_b': (str(ROOT / 'configs/cascade_rcnn/swin_b_3x.py'), '', 10.00, None),
    'mask_rcnn_convnext_t': ('mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py', '', 3.89, None),
}


def write_anchor_configs(folder: Path) -> List[str]:
    """One config file per anchor, named for it (the benchmark tools take files and name rows by file stem)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (base, delta, _, _) in ANCHORS.items():
        path = folder / f'{name}.py'
        path.write_text(f'# {name}: memory anchor of ../shared/ANCHORS.md (generated)\n_base_ = {base!r}\n{delta}')
        paths.append(str(path))
    return paths


def validation_rows(estimates: Dict[str, float]) -> List[dict]:
    """Per anchor: measured and estimated GiB, relative error, and for ConvNeXt the ConvNeXt/Swin ratios."""
    rows = []
    for name, (_, _, measured, swin) in ANCHORS.items():
        estimate = estimates.get(name)
        row = dict(name=name, anchor_gib=measured, estimated_peak_gib=estimate,
                   error=None if estimate is None else estimate / measured - 1)
        row['ok'] = estimate is not None and abs(row['error']) <= MAX_ERROR
        if swin is not None:
            row['anchor_ratio'] = measured / ANCHORS[swin][2]
            swin_estimate = estimates.get(swin)
            row['estimated_ratio'] = None if None in (estimate, swin_estimate) else estimate / swin_estimate
            row['ok'] = row['ok'] and row['estimated_ratio'] is not None and \
                abs(row['estimated_ratio'] - row['anchor_ratio']) <= MAX_RATIO_ERROR
        rows.append(row)
    return rows
