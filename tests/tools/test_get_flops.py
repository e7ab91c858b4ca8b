"""tools/get_flops.py counts parameters and FLOPs of detector and segmentor configs, whole and backbone alone."""
import json
import subprocess
import sys
from pathlib import Path

from convnext_dense import ConvNeXt

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / 'configs' / 'demo'


def get_flops(config: Path, *shape: int) -> dict:
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'get_flops.py'), str(config), '--shape',
                             *map(str, shape)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith('complexity: ')]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0][len('complexity: '):])


def test_detector_counts():
    counts = get_flops(DEMO / 'mask_rcnn_convnext_atto_demo.py', 128, 160)
    assert counts['input_shape'] == [128, 160] and counts['padded_shape'] == [128, 160]
    backbone_params = sum(p.numel() for p in ConvNeXt('atto').parameters())
    assert counts['backbone']['params'] == backbone_params
    assert counts['model']['params'] > backbone_params
    assert counts['model']['flops'] > counts['backbone']['flops'] > 0


def test_segmentor_flops_scale_with_the_image():
    small = get_flops(DEMO / 'upernet_convnext_atto_demo.py', 64, 64)
    large = get_flops(DEMO / 'upernet_convnext_atto_demo.py', 128, 128)
    assert small['backbone']['params'] == large['backbone']['params'] == sum(
        p.numel() for p in ConvNeXt('atto').parameters())
    # Every backbone layer is convolutional or per-pixel: 4x the pixels, 4x the FLOPs.
    assert large['backbone']['flops'] == 4 * small['backbone']['flops']
    assert large['model']['flops'] > large['backbone']['flops']
