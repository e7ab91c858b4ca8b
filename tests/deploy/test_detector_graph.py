"""DetectorGraph: Mask R-CNN and Cascade Mask R-CNN (V1 and V2 backbones) as one graph of standard ONNX ops. In PyTorch
it gives ``model.predict``'s detections and masks; exported once, onnxruntime gives the PyTorch module's detections at
the export size and at other sizes, and empty outputs when nothing passes the score threshold."""
import copy
import functools
import io
import warnings

import numpy as np
import pytest
import torch
from conftest import randomize_
from deploy_models import CASCADE_CONFIG, MASK_RCNN_CONFIG, build, demo_config
from mmcv.ops import nms, roi_align
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
from mmdet.structures import DetDataSample

from convnext_dense.deploy.detector_graph import (
    OUTPUT_NAMES,
    DetectorGraph,
    NonMaxSuppression,
    RoiAlign,
    UnsupportedDetectorError,
    paste_masks,
)
from convnext_dense.deploy.graph_checks import count_convnext_norms, find_problems
from convnext_dense.evaluation.detection_matching import match_detections

onnx = pytest.importorskip('onnx', reason='onnx (the deploy extra) is not installed')
ort = pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')

CONFIGS = dict(mask_rcnn=MASK_RCNN_CONFIG, cascade=CASCADE_CONFIG)
EXPORT_SIZE = (256, 192)
OTHER_SIZE = (200, 302)  # another aspect, no multiple of 32: the graph pads and clips at the size it is given


@functools.lru_cache(maxsize=None)
def detector(name: str, version: int) -> torch.nn.Module:
    """A demo detector with random weights whose scores spread over (0, 1): the backbone fully random, the neck and
    heads random and then scaled on one image to unit output spread (box regressors 0.1). mmdet's init gives RPN scores
    all near 0.5, plain random weights saturate them at 1: ties that float noise would break either way."""
    cfg = demo_config(CONFIGS[name], version)
    if version == 2:
        cfg.model.backbone.layer_scale_init_value = 0.  # as configs/*/_base_convnextv2_3x.py
    model = build(cfg)
    randomize_(model.backbone)
    generator = torch.Generator().manual_seed(1)
    calibrations = []
    with torch.no_grad():
        for module_name, module in model.named_modules():
            if not module_name.startswith('backbone') and isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.normal_(generator=generator)
                module.bias.normal_(0, 0.5, generator=generator)
                # box deltas small: boxes near their anchors rather than all clipped to the whole image
                target = 0.1 if module_name.endswith('_reg') else 1.
                calibrations.append(module.register_forward_hook(functools.partial(unit_output, target=target)))
        mmdet_predict(model, image((256, 256), seed=2))
    for hook in calibrations:
        hook.remove()
    return model.eval()


def unit_output(module, inputs, output, target):
    """Scale a layer at its first call so that its output's spread is ``target`` (LSUV initialisation)."""
    if getattr(module, 'calibrated', False):
        return output
    factor = target / output.std()
    module.weight.mul_(factor)
    module.bias.mul_(factor)
    module.calibrated = True
    return output * factor


def image(size, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (1, 3, *size)).astype(np.float32))


def mmdet_predict(model, x: torch.Tensor) -> tuple:
    """``model.predict`` on ``x`` as the test pipeline would hand it over without a resize."""
    size = tuple(x.shape[-2:])
    sample = DetDataSample(metainfo=dict(img_shape=size, ori_shape=size, scale_factor=(1., 1.)))
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[x[0]], data_samples=[sample]), False)
        result = model.predict(data['inputs'], data['data_samples'], rescale=True)[0].pred_instances
    return result.bboxes, result.scores, result.labels, result.masks


def run_graph(graph, x: torch.Tensor) -> tuple:
    with torch.no_grad():
        return tuple(graph(x))


def match(reference, outputs, box_tolerance: float, score_tolerance: float):
    """Every detection of ``reference`` (mmdet's or the module's) paired with one of ``outputs`` of the same label
    within the tolerances (near-tied scores may come out in another order)."""
    def instances(detections):
        return dict(zip(('bboxes', 'scores', 'labels', 'masks'), (np.asarray(t) for t in detections[:4])))

    matched = match_detections(instances(reference), instances(outputs), box_tolerance, score_tolerance)
    assert matched.unmatched == 0, matched
    return matched


def to_onnx(module, args: tuple, **kwargs) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')  # the tracer's notes on Python values and the exporter's deprecation
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=17, **kwargs)
    return buffer.getvalue()


def export_graph(graph, size) -> bytes:
    dynamic_axes = {'image': {2: 'height', 3: 'width'}, 'masks': {0: 'detections', 1: 'height', 2: 'width'}}
    dynamic_axes.update({name: {0: 'detections'} for name in OUTPUT_NAMES if name != 'masks'})
    return to_onnx(graph, (image(size), ), input_names=['image'], output_names=list(OUTPUT_NAMES),
                   dynamic_axes=dynamic_axes)


def run_onnx(model_bytes: bytes, **inputs: torch.Tensor) -> list:
    session = ort.InferenceSession(model_bytes, providers=['CPUExecutionProvider'])
    return session.run(None, {name: value.numpy() for name, value in inputs.items()})


@pytest.mark.parametrize('version', [1, 2])
@pytest.mark.parametrize('name', ['mask_rcnn', 'cascade'])
def test_the_graph_gives_mmdet_predictions(name, version):
    model = detector(name, version)
    x = image(OTHER_SIZE)
    reference = mmdet_predict(model, x)
    outputs = run_graph(DetectorGraph(model), x)
    assert len(reference[0]) >= 5 and reference[3].any(), 'the test needs detections with masks'
    assert [t.dtype for t in outputs] == [torch.float32, torch.float32, torch.int64, torch.uint8, torch.float32]
    assert outputs[3].shape[1:] == OTHER_SIZE and outputs[4].shape[1:] == (28, 28)
    assert match(reference, outputs, box_tolerance=1e-3, score_tolerance=1e-5).mask_pixels <= 0.01


@pytest.mark.parametrize('name, version', [('mask_rcnn', 1), ('cascade', 2)])
def test_onnx_graph_gives_the_modules_detections_at_any_size(name, version):
    graph = DetectorGraph(detector(name, version))
    model_bytes = export_graph(graph, EXPORT_SIZE)
    assert not any(module.training for module in graph.modules())  # the export restores eval mode, drop path off
    proto = onnx.load_from_string(model_bytes)
    assert find_problems(proto, count_convnext_norms(graph)) == []  # default domain only, onnx.checker passes
    stages = len(graph.box_stages) + len(graph.mask_stages)
    roi_aligns = [n for n in proto.graph.node if n.op_type == 'RoiAlign']
    assert len(roi_aligns) == 4 * stages  # one per pyramid level and extractor
    for node in roi_aligns:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes['coordinate_transformation_mode'] == b'half_pixel' and attributes['mode'] == b'avg'
        assert attributes['sampling_ratio'] == 0
    assert [n.op_type for n in proto.graph.node].count('NonMaxSuppression') == 2  # RPN and R-CNN
    for size in (EXPORT_SIZE, OTHER_SIZE):
        x = image(size, seed=1)
        reference = run_graph(graph, x)
        outputs = run_onnx(model_bytes, image=x)
        assert len(reference[0]) >= 5
        assert [o.dtype for o in outputs] == [np.float32, np.float32, np.int64, np.uint8, np.float32]
        assert outputs[3].shape[1:] == size
        matched = match(reference, outputs, box_tolerance=0.01, score_tolerance=1e-4)
        assert matched.mask_pixels <= 0.01, matched
        pairs = np.array(matched.pairs)
        np.testing.assert_allclose(outputs[4][pairs[:, 1]], reference[4].numpy()[pairs[:, 0]], atol=1e-4)


def test_no_detections_give_empty_outputs():
    model = copy.deepcopy(detector('mask_rcnn', 1))
    model.roi_head.test_cfg.score_thr = 1.
    graph = DetectorGraph(model)
    x = image(OTHER_SIZE)
    assert len(mmdet_predict(model, x)[0]) == 0
    expected = [((0, 4), np.float32), ((0, ), np.float32), ((0, ), np.int64), ((0, *OTHER_SIZE), np.uint8),
                ((0, 28, 28), np.float32)]
    assert [(tuple(t.shape), t.numpy().dtype) for t in run_graph(graph, x)] == expected
    assert [(o.shape, o.dtype) for o in run_onnx(export_graph(graph, EXPORT_SIZE), image=x)] == expected


def test_roi_align_is_mmcvs_aligned_roi_align_in_pytorch_and_onnx():
    """Boxes smaller than a cell (where ONNX's default mode and mmcv differ), partly outside, of zero size."""
    features = torch.randn(1, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[2., 3., 2.4, 3.3], [-4., -2., 10., 7.], [20., 10., 40., 30.], [5., 5., 5., 5.],
                          [0., 0., 31., 23.], [7.3, 1.1, 19.9, 9.6]])

    class Pool(torch.nn.Module):

        def forward(self, features, boxes, batch_indices):
            return RoiAlign.apply(features, boxes, batch_indices, (5, 4), 0.5, 0)

    batch_indices = torch.zeros(len(boxes), dtype=torch.int64)
    expected = roi_align(features, torch.cat([torch.zeros(len(boxes), 1), boxes], 1), (5, 4), 0.5, 0, 'avg', True)
    torch.testing.assert_close(Pool()(features, boxes, batch_indices), expected, rtol=0, atol=0)
    model_bytes = to_onnx(Pool(), (features, boxes, batch_indices), input_names=['features', 'boxes', 'batch_indices'],
                          dynamic_axes={'boxes': {0: 'n'}, 'batch_indices': {0: 'n'}})
    [got] = run_onnx(model_bytes, features=features, boxes=boxes, batch_indices=batch_indices)
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-5)
    assert not np.allclose(got, roi_align(features, torch.cat([torch.zeros(len(boxes), 1), boxes], 1), (5, 4), 0.5, 0,
                                          'avg', False).numpy(), atol=1e-3)  # the test tells the modes apart


@pytest.mark.parametrize('score_threshold', [None, 0.3])
def test_nms_has_the_onnx_ops_layout_and_selection(score_threshold):
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(2, 60, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + 5 + torch.rand(2, 60, 2, generator=generator) * 20], 2)
    scores = torch.rand(2, 3, 60, generator=generator)

    class Select(torch.nn.Module):

        def forward(self, boxes, scores):
            return NonMaxSuppression.apply(boxes, scores, 7, 0.4, score_threshold)

    selected = Select()(boxes, scores)
    for batch in range(2):
        for cls in range(3):
            rows = selected[(selected[:, 0] == batch) & (selected[:, 1] == cls)]
            candidates = torch.arange(60) if score_threshold is None else \
                (scores[batch, cls] > score_threshold).nonzero()[:, 0]
            expected = candidates[nms(boxes[batch, candidates], scores[batch, cls, candidates], 0.4)[1][:7]]
            assert rows[:, 2].tolist() == expected.tolist() and len(rows) == 7
    model_bytes = to_onnx(Select(), (boxes, scores), input_names=['boxes', 'scores'],
                          dynamic_axes={'boxes': {1: 'n'}, 'scores': {2: 'n'}})
    [got] = run_onnx(model_bytes, boxes=boxes, scores=scores)
    assert got.tolist() == selected.tolist()


def test_paste_masks_is_mmdets_cpu_paste():
    """Boxes small and large (mmdet pastes within a pixel of the box on the CPU, where the bilinear spread of a large
    box's cells reaches further), fractional, partly outside the image."""
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 28, 28, generator=generator)
    boxes = torch.tensor([[3.2, 4.7, 9.9, 8.1], [0., 0., 60., 40.], [-10., 5., 20., 70.], [30.5, 12.25, 59.5, 39.75],
                          [10., 10., 11., 13.], [2., 30., 58., 39.]])
    height, width = 40, 60
    expected = torch.zeros(6, height, width)
    for i in range(6):
        pasted, (rows, columns) = _do_paste_mask(masks[i:i + 1, None], boxes[i:i + 1], height, width, skip_empty=True)
        expected[i, rows, columns] = pasted[0]
    got = paste_masks(masks, boxes, height, width)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_unsupported_detectors_are_refused_with_what_is_supported():
    with pytest.raises(UnsupportedDetectorError, match='not a two-stage detector.*Supported: mmdet Mask R-CNN'):
        DetectorGraph(torch.nn.Linear(2, 2))
    model = copy.deepcopy(detector('mask_rcnn', 1))
    model.roi_head.mask_head = None
    with pytest.raises(UnsupportedDetectorError, match='StandardRoIHead without a mask head'):
        DetectorGraph(model)
    model = copy.deepcopy(detector('cascade', 1))
    model.roi_head.test_cfg.nms = dict(type='soft_nms', iou_threshold=0.5)
    with pytest.raises(UnsupportedDetectorError, match=r"test_cfg.rcnn.nms = .*soft_nms.*set test_cfg.rcnn.nms="
                       r"dict\(type='nms'"):
        DetectorGraph(model)
