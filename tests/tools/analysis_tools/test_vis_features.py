"""tools/analysis_tools/vis_features.py shows the backbone's four output maps for an image, with the strides and
shapes they have, and says which weights the backbone holds (tests/visualization/test_feature_maps.py tests the maps,
strides and weights on their own)."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import DET_CONFIG, SEG_CONFIG, save_random_checkpoint

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
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'analysis_tools' / 'vis_features.py'), str(config),
                             str(image), *args, '--out', 'maps/features.png'], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=300)
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


def test_a_missing_image_is_an_error(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'analysis_tools' / 'vis_features.py'),
                             str(DET_CONFIG), 'missing.jpg'], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and 'error: image not found: missing.jpg' in result.stderr
    assert 'Traceback' not in result.stderr and not list(tmp_path.iterdir())
