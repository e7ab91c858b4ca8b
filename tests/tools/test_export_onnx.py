"""tools/export_onnx.py end to end on the demo configs, then the exported graphs through tools/test.py (the data set
and metric of the checkpoint) and tools/image_demo.py: the same metrics and predictions as the PyTorch checkpoint."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')
from deploy.deploy_models import MASK_RCNN_CONFIG, SEG_CONFIG, build, demo_config  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_WAIT_POLICY='PASSIVE')


def run(args, cwd):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
    return result.stdout


def metrics_of(output: str) -> dict:
    return json.loads(next(line for line in output.splitlines() if line.startswith('metrics: '))[len('metrics: '):])


def checkpoint_of(config: Path, version: int, path: Path) -> str:
    model = build(demo_config(config, version))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=model.dataset_meta)), path)
    return str(path)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('onnx_workspace')
    run([REPO / 'tools/make_demo_data.py', '--num-train', '2', '--num-val', '3'], cwd=root)
    return root


def test_upernet_v2_graph_evaluates_like_its_checkpoint(workspace):
    options = ['--cfg-options', 'model.backbone.version=2']
    checkpoint = checkpoint_of(SEG_CONFIG, 2, workspace / 'upernet.pth')
    out = workspace / 'upernet.onnx'
    log = run([REPO / 'tools/export_onnx.py', SEG_CONFIG, checkpoint, '--out', out, '--dynamic', *options], workspace)
    assert 'exported segmentation graph' in log and log.count('onnxruntime vs PyTorch, largest difference') == 2
    expected = metrics_of(run([REPO / 'tools/test.py', SEG_CONFIG, checkpoint, '--work-dir', workspace / 'pt',
                               *options], workspace))
    measured = metrics_of(run([REPO / 'tools/test.py', SEG_CONFIG, out, '--work-dir', workspace / 'ort'], workspace))
    for key in ('mIoU', 'aAcc', 'mAcc'):
        assert abs(measured[key] - expected[key]) <= 0.1, (key, measured, expected)
    drawn = run([REPO / 'tools/image_demo.py', SEG_CONFIG, out, 'data/demo/ade/ADEChallengeData2016/images/validation',
                 '--out-dir', workspace / 'drawn'], workspace).split()
    drawn = [line for line in drawn if line.endswith('.png')]
    assert len(drawn) == 3 and all(Path(workspace / p).stat().st_size > 0 for p in drawn)


def test_mask_rcnn_graph_predicts_like_its_checkpoint(workspace):
    """Scores and boxes (scaled back to the original image) agree; masks come out of the graph at the input size and
    are resized to the original, where mmdet pastes them directly: random-weight masks, near 0.5 everywhere, differ
    there, so masks are compared through the metric only."""
    checkpoint = checkpoint_of(MASK_RCNN_CONFIG, 1, workspace / 'mask_rcnn.pth')
    out = workspace / 'mask_rcnn.onnx'
    log = run([REPO / 'tools/export_onnx.py', MASK_RCNN_CONFIG, checkpoint, '--out', out, '--dynamic'], workspace)
    assert 'exported detection graph' in log
    results = {}
    for name, model in [('pt', checkpoint), ('ort', out)]:
        test_log = run([REPO / 'tools/test.py', MASK_RCNN_CONFIG, model, '--work-dir', workspace / name, '--out',
                        workspace / f'{name}.pkl'], workspace)
        with open(workspace / f'{name}.pkl', 'rb') as f:
            results[name] = metrics_of(test_log), pickle.load(f)
    (expected, reference), (measured, predicted) = results['pt'], results['ort']
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert abs(measured[key] - expected[key]) <= 0.005, (key, measured, expected)
    assert sum(len(p['pred_instances']['scores']) for p in reference) > 0, 'nothing detected proves nothing'
    for ours, theirs in zip(predicted, reference):
        ours, theirs = ours['pred_instances'], theirs['pred_instances']
        assert len(ours['scores']) == len(theirs['scores'])
        order_ours, order_theirs = np.argsort(-np.asarray(ours['scores'])), np.argsort(-np.asarray(theirs['scores']))
        np.testing.assert_allclose(np.asarray(ours['scores'])[order_ours], np.asarray(theirs['scores'])[order_theirs],
                                   atol=1e-4)
        np.testing.assert_allclose(np.asarray(ours['bboxes'])[order_ours], np.asarray(theirs['bboxes'])[order_theirs],
                                   atol=0.05)
