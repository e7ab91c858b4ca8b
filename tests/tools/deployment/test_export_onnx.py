"""tools/deployment/export_onnx.py end to end on the demo configs, then the exported graphs through tools/test.py (the
data set and metric of the checkpoint) and tools/misc/image_demo.py: the same metrics and predictions as the PyTorch
checkpoint."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')
from deploy.deploy_models import MASK_RCNN_CONFIG, SEG_CONFIG, build, demo_config  # noqa: E402

from convnext_dense.evaluation.detection_matching import match_detections  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_WAIT_POLICY='PASSIVE')


def run(args, cwd):
    return run_together([args], cwd)[0]


def run_together(commands, cwd):
    """Run the tool command lines side by side (each is mostly imports and start-up); their stdouts, in order."""
    procs = [subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in commands]
    outputs = [proc.communicate(timeout=900) for proc in procs]
    for args, proc, (stdout, stderr) in zip(commands, procs, outputs):
        assert proc.returncode == 0, f'{args} failed:\n{stdout[-3000:]}\n{stderr[-3000:]}'
    return [stdout for stdout, _ in outputs]


def metrics_of(output: str) -> dict:
    return json.loads(next(line for line in output.splitlines() if line.startswith('metrics: '))[len('metrics: '):])


def checkpoint_of(config: Path, version: int, path: Path) -> str:
    model = build(demo_config(config, version))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=model.dataset_meta)), path)
    return str(path)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('onnx_workspace')
    run([REPO / 'tools/misc/make_demo_data.py', '--num-train', '2', '--num-val', '3'], cwd=root)
    return root


def test_upernet_v2_graph_evaluates_like_its_checkpoint(workspace):
    """fp32 and fp16 graphs reach the checkpoint's mIoU through tools/test.py; the fp16 export writes the TensorRT
    command that keeps the same nodes in fp32."""
    options = ['--cfg-options', 'model.backbone.version=2']
    checkpoint = checkpoint_of(SEG_CONFIG, 2, workspace / 'upernet.pth')
    out, half = workspace / 'upernet.onnx', workspace / 'upernet_fp16.onnx'
    log, log_fp16, expected = run_together([
        [REPO / 'tools/deployment/export_onnx.py', SEG_CONFIG, checkpoint, '--out', out, '--dynamic', *options],
        [REPO / 'tools/deployment/export_onnx.py', SEG_CONFIG, checkpoint, '--out', half, '--dynamic', '--fp16',
         *options],
        [REPO / 'tools/test.py', SEG_CONFIG, checkpoint, '--work-dir', workspace / 'pt', *options]], workspace)
    assert 'exported segmentation graph' in log
    assert log.count('onnxruntime (CPUExecutionProvider) vs PyTorch, largest difference') == 2
    trtexec = (workspace / 'upernet_fp16.trtexec.sh').read_text()
    assert f'bash {workspace / "upernet_fp16.trtexec.sh"}' in log_fp16
    assert trtexec.startswith(f'trtexec --onnx={half} --fp16 --precisionConstraints=obey --layerPrecisions=')
    assert '/backbone/stages.0.0/norm/LayerNormalization:fp32' in trtexec and '/backbone/stages.0.0/Add:fp32' in trtexec
    measured, measured_fp16, drawn = run_together([
        [REPO / 'tools/test.py', SEG_CONFIG, out, '--work-dir', workspace / 'ort'],
        [REPO / 'tools/test.py', SEG_CONFIG, half, '--work-dir', workspace / 'ort_fp16'],
        [REPO / 'tools/misc/image_demo.py', SEG_CONFIG, out, 'data/demo/ade/ADEChallengeData2016/images/validation',
         '--out-dir', workspace / 'drawn']], workspace)
    expected = metrics_of(expected)
    for measured in (metrics_of(measured), metrics_of(measured_fp16)):
        for key in ('mIoU', 'aAcc', 'mAcc'):
            assert abs(measured[key] - expected[key]) <= 0.1, (key, measured, expected)
    drawn = [line.strip() for line in drawn.splitlines() if line.strip().endswith('.png')]
    assert len(drawn) == 3 and all((workspace / p).stat().st_size > 0 for p in drawn), drawn


def test_mask_rcnn_graph_predicts_like_its_checkpoint(workspace):
    """The same detections and masks as the checkpoint evaluated one image at a time (the graph's way: a batch of
    images of different sizes is padded to the largest, which changes the features near the borders): boxes scaled
    back to the original image and mask probabilities pasted there, as mmdet does."""
    checkpoint = checkpoint_of(MASK_RCNN_CONFIG, 1, workspace / 'mask_rcnn.pth')
    out = workspace / 'mask_rcnn.onnx'
    log, expected = run_together([
        [REPO / 'tools/deployment/export_onnx.py', MASK_RCNN_CONFIG, checkpoint, '--out', out, '--dynamic'],
        [REPO / 'tools/test.py', MASK_RCNN_CONFIG, checkpoint, '--work-dir', workspace / 'pt', '--out',
         workspace / 'pt.pkl', '--cfg-options', 'test_dataloader.batch_size=1']], workspace)
    assert 'exported detection graph' in log
    measured = run([REPO / 'tools/test.py', MASK_RCNN_CONFIG, out, '--work-dir', workspace / 'ort', '--out',
                    workspace / 'ort.pkl'], workspace)
    assert 'compare with the checkpoint at test batch size 1' in measured  # the demo config batches 4
    expected, measured = metrics_of(expected), metrics_of(measured)
    reference, predicted = (pickle.loads((workspace / f'{name}.pkl').read_bytes()) for name in ('pt', 'ort'))
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert abs(measured[key] - expected[key]) <= 0.005, (key, measured, expected)
    assert sum(len(p['pred_instances']['scores']) for p in reference) > 0, 'nothing detected proves nothing'
    for ours, theirs in zip(predicted, reference):
        matched = match_detections(theirs['pred_instances'], ours['pred_instances'], box_tolerance=0.01,
                                   score_tolerance=1e-4)
        assert matched.unmatched == 0 and matched.mask_union <= 0.01, matched


# The demo test pipelines resize to fit 192x192 (keep ratio): the default fixed shape. PyTorch padding the same way.
FIXED = 192
SAME_PADDING = {MASK_RCNN_CONFIG: f'model.data_preprocessor.pad_size_divisor={FIXED}',
                SEG_CONFIG: f'model.data_preprocessor.test_cfg.size=[{FIXED},{FIXED}]'}


# Cascade's fixed graph differs from Mask R-CNN's only in its RoI heads, whose graph tests/deploy/test_detector_graph.py
# checks against mmdet at several sizes; the padding, cropping and clipping are the runtime's, the same for both.
@pytest.mark.parametrize('config', [MASK_RCNN_CONFIG, SEG_CONFIG], ids=lambda c: c.stem)
def test_fixed_shape_graph_serves_every_image_of_the_test_set(workspace, config):
    """Without --dynamic the graph takes one shape, the config's default; the runtime pads each smaller image to it
    (bottom / right, with the pixel that normalises to the pad value) and crops or clips the outputs back. Compared
    with the checkpoint padded the same way (batch 1), fp32 and fp16 graphs reach its metrics within the dynamic graphs'
    tolerances; the fp32 graph's detections match its one to one except where the graph clips proposals to the padded
    frame rather than to the image (mmdet's RPN clips to the image), which changes a few near the bottom / right edge.
    How much padding to the fixed shape moves the metrics of trained models is measured in the README."""
    name = config.stem
    version = 2 if config == SEG_CONFIG else 1  # random V1 UperNet logits are near ties that fp16 flips
    options = ['--cfg-options', f'model.backbone.version={version}']
    checkpoint = checkpoint_of(config, version, workspace / f'{name}.pth')
    fp32, fp16 = workspace / f'{name}_fixed.onnx', workspace / f'{name}_fixed_fp16.onnx'
    export_log, _, expected = run_together([
        [REPO / 'tools/deployment/export_onnx.py', config, checkpoint, '--out', fp32, *options],
        [REPO / 'tools/deployment/export_onnx.py', config, checkpoint, '--out', fp16, '--fp16', *options],
        [REPO / 'tools/test.py', config, checkpoint, '--work-dir', workspace / f'{name}_pt', '--out',
         workspace / f'{name}_pt.pkl', *options, 'test_dataloader.batch_size=1', SAME_PADDING[config]]],
        workspace)
    assert f'shape {FIXED}x{FIXED}: the largest input the test pipeline makes' in export_log
    assert f'input {FIXED}x{FIXED}' in export_log
    measured, measured_fp16 = run_together([
        [REPO / 'tools/test.py', config, fp32, '--work-dir', workspace / f'{name}_ort', '--out',
         workspace / f'{name}_ort.pkl'],
        [REPO / 'tools/test.py', config, fp16, '--work-dir', workspace / f'{name}_ort16']], workspace)
    assert f'input {FIXED} {FIXED}' in measured
    expected = metrics_of(expected)
    if config == SEG_CONFIG:
        keys, tolerance = ('mIoU', 'aAcc', 'mAcc'), 0.1
        assert all(abs(metrics_of(measured)[k] - expected[k]) <= 0.01 for k in keys), (measured, expected)
    else:
        keys, tolerance = ('coco/bbox_mAP', 'coco/segm_mAP'), 0.005
        reference, predicted = (pickle.loads((workspace / f'{name}_{run}.pkl').read_bytes()) for run in ('pt', 'ort'))
        count = sum(len(p['pred_instances']['scores']) for p in reference)
        assert count > 0, 'nothing detected proves nothing'
        unmatched = 0
        for ours, theirs in zip(predicted, reference):
            matched = match_detections(theirs['pred_instances'], ours['pred_instances'], box_tolerance=0.01,
                                       score_tolerance=1e-4)
            assert matched.box <= 0.01 and matched.score <= 1e-4 and matched.mask_union <= 0.01, matched
            unmatched += len(matched.unmatched_reference)
        assert unmatched <= 0.2 * count, (unmatched, count)
    for got in (metrics_of(measured), metrics_of(measured_fp16)):
        for key in keys:
            assert abs(got[key] - expected[key]) <= tolerance, (key, got, expected)
