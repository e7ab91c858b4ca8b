"""tools/analysis_tools/get_flops.py counts parameters and FLOPs of detector and segmentor configs as the ConvNeXt
paper did, whole and per part, and compares them with the published figure."""
import json
import subprocess
import sys
from pathlib import Path

from convnext_dense import ConvNeXt

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / 'configs' / 'demo'


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'analysis_tools' / 'get_flops.py'), *args],
                          capture_output=True, text=True, timeout=600)


def get_flops(config: Path, *shape: int) -> dict:
    result = run_tool(str(config), *(['--shape', *map(str, shape)] if shape else []))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1].startswith('complexity: '), result.stdout
    return json.loads(result.stdout.splitlines()[-1][len('complexity: '):])


def test_mask_rcnn_tiny_matches_the_published_figure():
    """262G at 1280x800 in the ConvNeXt paper, counted on mmdet 2.x forward_dummy (1000 RoIs, 100 for masks)."""
    counts = get_flops(REPO / 'configs' / 'mask_rcnn' / 'convnext_t_3x.py')
    assert counts['input_shape'] == [1280, 800]
    assert '1 box head(s) on 1000 RoIs' in counts['counted'] and '1 mask head(s) on 100 RoIs' in counts['counted']
    assert counts['official'] == dict(gflops=262, params_m=48)
    assert abs(counts['model']['flops'] / 262e9 - 1) < 0.03
    assert round(counts['model']['params'] / 1e6) == 48


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

