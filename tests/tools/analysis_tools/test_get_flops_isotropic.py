"""tools/analysis_tools/get_flops.py on the isotropic ConvNeXt configs: the count covers the backbone, ViTDet's simple
feature pyramid and the heads, as for the hierarchical configs (full-size figures: the README's table)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from convnext_dense import ConvNeXtIsotropic
from convnext_dense.analysis.flops import count_config

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow  # a subprocess: mostly the imports of mmdet
def test_the_tool_counts_backbone_neck_and_heads_of_mask_rcnn():
    result = subprocess.run([sys.executable, str(REPO / 'tools/analysis_tools/get_flops.py'),
                             str(REPO / 'configs/mask_rcnn/convnext_iso_s_3x.py'), '--shape', '128', '160',
                             # two of the 18 blocks (those after the last output are not built), for speed
                             '--cfg-options', 'model.backbone.out_indices=(1,)'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout.splitlines()[-1][len('complexity: '):])
    assert counts['counted'].startswith('backbone + neck + RPN head on all levels')
    with torch.device('meta'):
        backbone_params = sum(p.numel() for p in ConvNeXtIsotropic('small', out_indices=(1, )).parameters())
    assert counts['backbone']['params'] == backbone_params and counts['official'] is None
    assert counts['parts']['neck']['flops'] > 0 and counts['parts']['neck']['params'] > 0
    # every layer of the backbone is a patchify conv or per pixel of the stride-16 map: its FLOPs are exact
    depth, dim, pixels = 2, 384, (128 // 16) * (160 // 16)
    norm = 5 * dim  # fvcore's count of an affine LayerNorm: 5 per element
    block = dim * 49 + norm + 2 * dim * 4 * dim  # depthwise 7x7, the LayerNorm, the two pointwise layers
    stem = 3 * 16 * 16 * dim
    assert counts['backbone']['flops'] == pixels * (stem + depth * block + norm)  # + the output norm


def test_segmentor_flops_of_backbone_and_neck_scale_with_the_image():
    cfg = Config.fromfile(str(REPO / 'configs/upernet/convnext_iso_s_160k_ade20k.py'))
    cfg.model.backbone.update(init_cfg=None, out_indices=(1, ))
    small, large = count_config(cfg, (64, 64)), count_config(cfg, (128, 128))
    for part in ('backbone', 'neck'):
        assert large.parts[part]['flops'] == 4 * small.parts[part]['flops'] > 0
    assert large.flops > large.parts['backbone']['flops'] + large.parts['neck']['flops']
