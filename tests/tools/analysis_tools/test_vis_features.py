"""tools/analysis_tools/vis_features.py shows the backbone's four output maps for an image, with the strides and shapes they have, and
says which weights the backbone holds."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from mmengine.config import Config

from conftest import DET_CONFIG, SEG_CONFIG, load_tool, save_random_checkpoint

REPO = Path(__file__).resolve().parents[3]
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_WAIT_POLICY='PASSIVE')
STAGE_LINE = re.compile(r'^stage (\d): stride (\d+), (\d+) x (\d+) x (\d+) \(C x H x W\)$', re.M)


@pytest.mark.slow
@pytest.mark.parametrize('config, with_checkpoint', [(DET_CONFIG, True), (SEG_CONFIG, False)])
def test_four_maps_with_their_strides(tmp_path, config, with_checkpoint):
    subprocess.run([sys.executable, str(REPO / 'tools' / 'misc' / 'make_demo_data.py'), '--out', str(tmp_path / 'data'),
                    '--num-train', '1', '--num-val', '1'], check=True, capture_output=True)
    image = tmp_path / 'data' / 'coco' / 'val2017' / '000000000001.jpg'
    args = ['--checkpoint', save_random_checkpoint(config, tmp_path / 'model.pth')] if with_checkpoint else []
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'analysis_tools' / 'vis_features.py'), str(config), str(image), *args,
                             '--out', 'maps/features.png'], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stages = [tuple(map(int, match)) for match in STAGE_LINE.findall(result.stdout)]
    assert [(stage, stride, channels) for stage, stride, channels, _, _ in stages] == [
        (1, 4, 40), (2, 8, 80), (3, 16, 160), (4, 32, 320)]  # ConvNeXt-atto
    # Each map is a stride-times smaller copy of the backbone's input (the resized image, padded to 32 for mmdet).
    height, width = stages[0][3] * 4, stages[0][4] * 4
    assert all((h, w) == (math.ceil(height / s), math.ceil(width / s)) for _, s, _, h, w in stages)
    assert result.stdout.splitlines()[-1] == 'maps/features.png'
    picture = cv2.imread(str(tmp_path / 'maps' / 'features.png'))
    assert picture is not None and picture.shape == (360, 1600, 3)  # five 320 x 360 panels at 100 dpi
    # The heat maps (inferno: dark purple to yellow) are there, not just titles on white.
    hsv = cv2.cvtColor(picture, cv2.COLOR_BGR2HSV)
    assert ((hsv[..., 1] > 150) & (hsv[..., 2] > 150)).mean() > 0.05


def test_stride_is_found_from_the_padded_sizes():
    vis_features = load_vis_features()
    assert [vis_features.stride_of(192, size) for size in (48, 24, 12, 6)] == [4, 8, 16, 32]
    # Sizes no stride divides: the backbone pads, and outputs are ceil(size / stride).
    assert [vis_features.stride_of(176, size) for size in (44, 22, 11, 6)] == [4, 8, 16, 32]
    assert [vis_features.stride_of(100, size) for size in (25, 13, 7, 4)] == [4, 8, 16, 32]


def test_first_component_finds_the_dominant_pattern():
    vis_features = load_vis_features()
    generator = torch.Generator().manual_seed(0)
    pattern = torch.zeros(12, 16)
    pattern[3:6, 4:9] = 1.0  # a small bright object on a plain background
    direction = torch.randn(32, generator=generator)
    feature = -direction[:, None, None] * pattern + 0.05 * torch.randn(32, 12, 16, generator=generator)
    heat, explained = vis_features.first_component(feature)
    assert heat.shape == (12, 16)
    assert torch.corrcoef(torch.stack([heat.flatten(), pattern.flatten()]))[0, 1] > 0.99  # the object is bright
    assert 0.8 < explained <= 1


def test_backbone_weights_come_from_the_config_or_a_clear_error(tmp_path):
    vis_features = load_vis_features()
    from convnext_dense.apis.runner_setup import SetupError, load_config
    assert vis_features.backbone_init(load_config(str(DET_CONFIG))) == (None, 'random weights')
    with pytest.raises(SetupError, match=r'pretrained checkpoint not found: checkpoints/convnext_tiny_1k_224\.pth '
                                         r'.*--cfg-options model\.backbone\.init_cfg=None'):
        vis_features.backbone_init(load_config(str(REPO / 'configs' / 'mask_rcnn' / 'convnext_t_3x.py')))
    with pytest.raises(SetupError, match='a download'):
        vis_features.backbone_init(Config(dict(model=dict(backbone=dict(
            init_cfg=dict(type='Pretrained', checkpoint='https://example.com/convnext.pth'))))))
    (tmp_path / 'convnext.pth').write_bytes(b'')
    init_cfg, weights = vis_features.backbone_init(Config(dict(model=dict(backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'convnext.pth')))))))
    assert init_cfg.checkpoint == str(tmp_path / 'convnext.pth') and weights == 'pretrained backbone: convnext.pth'


def load_vis_features():
    load_tool('misc/image_demo')  # vis_features imports it
    return load_tool('analysis_tools/vis_features')
