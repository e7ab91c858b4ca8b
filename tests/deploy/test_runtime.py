"""The runtime side of deploy: graphs are refused unless tools/deployment/export_onnx.py wrote them for the config's
task and classes; detections are scaled back to the original image and their masks pasted there as mmdet's
``rescale=True`` does; sliding-window segmentation through the graph equals mmseg's ``slide_inference`` of the PyTorch
model."""
import json

import numpy as np
import pytest
import torch
from deploy_models import MASK_RCNN_CONFIG, SEG_CONFIG, build, demo_config
from mmengine.config import ConfigDict

onnx = pytest.importorskip('onnx', reason='onnx (the deploy extra) is not installed')
pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from convnext_dense.apis.inference import use_onnx_model  # noqa: E402
from convnext_dense.apis.runner_setup import SetupError  # noqa: E402
from convnext_dense.deploy.export import export  # noqa: E402
from convnext_dense.deploy.runtime import OnnxModel, OnnxRuntimeModel  # noqa: E402

SEG_CLASSES = ['background', 'circle', 'square', 'triangle']


def constant_graph(path, outputs: dict, metadata: dict = None) -> str:
    """A graph taking an image and giving ``outputs`` (name -> array) whatever the image, with ``metadata``."""
    nodes = [helper.make_node('Constant', [], [name], value=numpy_helper.from_array(value, name))
             for name, value in outputs.items()]
    graph = helper.make_graph(
        nodes, 'constant', [helper.make_tensor_value_info('image', TensorProto.FLOAT, [1, 3, 'height', 'width'])],
        [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
         for name, value in outputs.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def segmentation_graph(path, classes=SEG_CLASSES) -> str:
    return constant_graph(path, dict(logits=np.zeros((1, len(classes), 8, 8), np.float32)),
                          dict(task='segmentation', classes=json.dumps(classes), input_shape='dynamic',
                               export_shape='8 8', precision='fp32', align_corners='false', threshold='0.5'))


def test_a_graph_without_our_metadata_is_refused(tmp_path):
    path = constant_graph(tmp_path / 'foreign.onnx', dict(logits=np.zeros((1, 4, 8, 8), np.float32)))
    with pytest.raises(ValueError, match='not written by tools/deployment/export_onnx.py .*metadata names no task.*'
                       'tools/deployment/export_onnx.py CONFIG CHECKPOINT --out'):
        OnnxModel(path)
    with pytest.raises(SetupError, match='not written by tools/deployment/export_onnx.py'):
        use_onnx_model(demo_config(SEG_CONFIG), path)


def test_a_graph_of_another_task_is_refused(tmp_path):
    path = segmentation_graph(tmp_path / 'seg.onnx')
    cfg = demo_config(MASK_RCNN_CONFIG)
    with pytest.raises(SetupError, match='is a segmentation graph and .* an mmdet config; evaluate a detection graph'):
        use_onnx_model(cfg, path)
    assert cfg.model.type != 'OnnxRuntimeModel', 'a refused graph leaves the config as it was'


def test_a_graph_of_other_classes_is_refused(tmp_path):
    path = segmentation_graph(tmp_path / 'seg.onnx', classes=['sky', 'road'])
    with pytest.raises(SetupError, match=r"predicts the classes \('sky', 'road'\), the test set has "
                       r"\('background', 'circle', 'square', 'triangle'\)"):
        use_onnx_model(demo_config(SEG_CONFIG), path)


def test_a_matching_graph_replaces_the_model(tmp_path):
    path = segmentation_graph(tmp_path / 'seg.onnx')
    cfg = demo_config(SEG_CONFIG)
    note = use_onnx_model(cfg, path)
    assert cfg.model == dict(type='OnnxRuntimeModel', onnx_file=path, test_cfg=dict(cfg.model.test_cfg))
    assert 'data_preprocessor' not in cfg and 'evaluating' in note and 'onnxruntime (fp32' in note


def test_detections_are_scaled_back_and_masks_pasted_on_the_original_image_as_mmdet_does(tmp_path):
    """The graph's boxes are in input pixels (after the test resize): mmdet's rescale divides them by the resize's
    (w, h) factor and pastes the mask probabilities along them on the original image (FCNMaskHead with rescale=True),
    not the masks of the resized image."""
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead
    from mmdet.structures import DetDataSample
    boxes = np.array([[30., 20., 60., 40.], [3., 6., 9., 12.], [10.5, 3.25, 41.75, 37.5]], np.float32)
    labels = np.array([2, 0, 1], np.int64)
    probabilities = np.random.default_rng(0).random((3, 28, 28)).astype(np.float32)
    outputs = dict(boxes=boxes, scores=np.array([0.9, 0.4, 0.3], np.float32), labels=labels,
                   masks=np.zeros((3, 40, 60), np.uint8), mask_probabilities=probabilities)
    path = constant_graph(tmp_path / 'det.onnx', outputs, dict(task='detection', classes='["a", "b", "c"]',
                                                               input_shape='dynamic', mask_threshold='0.5'))
    model = OnnxRuntimeModel(path)
    scale_factor = (1.5, 2.0)  # (w, h): a 40x60 input resized from a 20x40 image
    meta = dict(ori_shape=(20, 40), img_shape=(40, 60), scale_factor=scale_factor)
    predicted, = model.forward([torch.zeros(3, 40, 60, dtype=torch.uint8)], [DetDataSample(metainfo=meta)])
    found = predicted.pred_instances
    # mmdet's bbox head: bboxes / bboxes.new_tensor(scale_factor).repeat((1, 2))
    expected = torch.from_numpy(boxes) / torch.tensor(scale_factor).repeat((1, 2))
    torch.testing.assert_close(found.bboxes, expected)
    torch.testing.assert_close(found.bboxes[0], torch.tensor([20., 10., 40., 20.]))
    assert found.scores.tolist() == pytest.approx([0.9, 0.4, 0.3]) and found.labels.tolist() == [2, 0, 1]
    head = FCNMaskHead(num_classes=3)
    per_class = torch.zeros(3, 3, 28, 28)
    per_class[torch.arange(3), torch.from_numpy(labels)] = torch.from_numpy(probabilities)
    mmdet_masks = head._predict_by_feat_single(per_class, torch.from_numpy(boxes), torch.from_numpy(labels), meta,
                                               ConfigDict(mask_thr_binary=0.5), rescale=True, activate_map=True)
    assert found.masks.shape == (3, 20, 40) and found.masks.dtype == torch.bool
    assert mmdet_masks.any(dim=(1, 2)).all(), 'each mask must show something for the comparison to mean anything'
    assert torch.equal(found.masks, mmdet_masks)


def test_no_detections_give_empty_instances_at_the_original_size(tmp_path):
    from mmdet.structures import DetDataSample
    outputs = dict(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32),
                   labels=np.zeros(0, np.int64), masks=np.zeros((0, 40, 60), np.uint8),
                   mask_probabilities=np.zeros((0, 28, 28), np.float32))
    path = constant_graph(tmp_path / 'det.onnx', outputs, dict(task='detection', classes='["a"]',
                                                               input_shape='dynamic', mask_threshold='0.5'))
    sample = DetDataSample(metainfo=dict(ori_shape=(20, 40), img_shape=(40, 60), scale_factor=(1.5, 2.0)))
    found = OnnxRuntimeModel(path).forward([torch.zeros(3, 40, 60, dtype=torch.uint8)], [sample])[0].pred_instances
    assert found.bboxes.shape == (0, 4) and found.masks.shape == (0, 20, 40) and len(found.scores) == 0


@pytest.mark.parametrize('version', [1, 2])
def test_sliding_window_segmentation_equals_mmsegs_slide_inference(version, tmp_path):
    """A graph exported at the crop size runs on each window of a larger image; the averaged logits and the labels are
    mmseg's ``slide_inference`` of the PyTorch model (windows overlapping, the last flush with the border)."""
    from mmseg.structures import SegDataSample
    crop, stride, size = (64, 64), (40, 48), (100, 130)
    model = build(demo_config(SEG_CONFIG, version))
    path = tmp_path / 'upernet.onnx'
    export(model, str(path), crop)
    model.test_cfg = ConfigDict(mode='slide', crop_size=crop, stride=stride)
    image = torch.from_numpy(np.random.default_rng(version).integers(0, 256, (3, *size), dtype=np.uint8))

    def sample():
        return SegDataSample(metainfo=dict(ori_shape=size, img_shape=size))

    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[image], data_samples=[sample()]), False)
        expected = model.predict(data['inputs'], data['data_samples'])[0]
    runtime = OnnxRuntimeModel(str(path), test_cfg=dict(model.test_cfg))
    found = runtime.forward([image], [sample()])[0]
    logits, reference = found.seg_logits.data.numpy(), expected.seg_logits.data.numpy()
    assert logits.shape == reference.shape == (4, *size)
    np.testing.assert_allclose(logits, reference, atol=1e-4 * np.abs(reference).max())
    assert np.mean(found.pred_sem_seg.data.numpy() != expected.pred_sem_seg.data.numpy()) <= 1e-3


def test_a_label_map_graph_is_refused_for_sliding_windows(tmp_path):
    path = constant_graph(tmp_path / 'labels.onnx', dict(labels=np.zeros((1, 8, 8), np.int64)),
                          dict(task='segmentation', classes='["a"]', input_shape='dynamic'))
    with pytest.raises(ValueError, match='outputs label maps, but the config infers in sliding windows'):
        OnnxRuntimeModel(path, test_cfg=dict(mode='slide', crop_size=(8, 8), stride=(4, 4)))


def fixed_segmentation_graph(path, shape=(64, 64), pad_pixel=(1., 2., 3.), classes=SEG_CLASSES[:3]) -> str:
    """A constant graph that says it takes ``shape`` and returns the image it got as its logits, to see the padding."""
    image = helper.make_tensor_value_info('image', TensorProto.FLOAT, [1, 3, 'height', 'width'])
    logits = helper.make_tensor_value_info('logits', TensorProto.FLOAT, [1, 3, 'height', 'width'])
    graph = helper.make_graph([helper.make_node('Identity', ['image'], ['logits'])], 'echo', [image], [logits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    helper.set_model_props(model, dict(task='segmentation', classes=json.dumps(classes),
                                       input_shape=f'{shape[0]} {shape[1]}', export_shape=f'{shape[0]} {shape[1]}',
                                       precision='fp32', align_corners='false', threshold='0.5',
                                       pad_pixel=json.dumps(list(pad_pixel))))
    onnx.save(model, str(path))
    return str(path)


def test_a_fixed_shape_graph_gets_each_image_padded_bottom_right_with_the_pad_pixel(tmp_path):
    graph = OnnxModel(fixed_segmentation_graph(tmp_path / 'echo.onnx'))
    image = np.random.default_rng(0).random((1, 3, 40, 50)).astype(np.float32) * 255
    seen = graph.run(image)['logits']
    assert seen.shape == (1, 3, 64, 64)
    np.testing.assert_array_equal(seen[:, :, :40, :50], image)
    assert (seen[0, :, 40:, :] == np.array([1., 2., 3.]).reshape(3, 1, 1)).all()
    assert (seen[0, :, :, 50:] == np.array([1., 2., 3.]).reshape(3, 1, 1)).all()
    with pytest.raises(ValueError, match=r'exported for images up to 64x64 and got one of 70x50; export it with '
                                         r'--shape H W \(at least 70 64\) or --dynamic'):
        graph.run(np.zeros((1, 3, 70, 50), np.float32))


def test_segmentation_logits_of_a_fixed_shape_graph_are_cropped_back_to_the_image(tmp_path):
    """The padded rows and columns never reach the prediction: whole-image and sliding-window inference alike."""
    from mmseg.structures import SegDataSample
    path = fixed_segmentation_graph(tmp_path / 'echo.onnx', pad_pixel=(-1e3, -1e3, -1e3))
    for size, test_cfg in (((40, 60), None), ((40, 100), dict(mode='slide', crop_size=(64, 64), stride=(48, 48)))):
        image = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, *size), dtype=np.uint8))
        sample = SegDataSample(metainfo=dict(ori_shape=size, img_shape=size))
        found = OnnxRuntimeModel(path, test_cfg=test_cfg).forward([image], [sample])[0]
        np.testing.assert_allclose(found.seg_logits.data.numpy(), image.float().numpy(), rtol=1e-6)


def test_detections_of_a_fixed_shape_graph_are_clipped_to_the_image_not_the_padding(tmp_path):
    from mmdet.structures import DetDataSample
    outputs = dict(boxes=np.array([[10., 5., 63., 60.]], np.float32), scores=np.array([0.9], np.float32),
                   labels=np.array([0], np.int64), masks=np.zeros((1, 64, 64), np.uint8),
                   mask_probabilities=np.ones((1, 28, 28), np.float32))
    path = constant_graph(tmp_path / 'det.onnx', outputs, dict(
        task='detection', classes='["a"]', input_shape='64 64', export_shape='64 64', mask_threshold='0.5',
        pad_pixel='[0, 0, 0]'))
    meta = dict(ori_shape=(40, 50), img_shape=(40, 50), scale_factor=(1., 1.))
    found = OnnxRuntimeModel(path).forward([torch.zeros(3, 40, 50, dtype=torch.uint8)],
                                           [DetDataSample(metainfo=meta)])[0].pred_instances
    torch.testing.assert_close(found.bboxes, torch.tensor([[10., 5., 50., 40.]]))


def test_a_fixed_shape_graph_too_small_for_the_test_pipeline_stops_before_the_data_loads(tmp_path):
    """The demo test pipeline resizes into 192x192 (keep ratio): a 160x192 graph cannot serve portrait images."""
    small = fixed_segmentation_graph(tmp_path / 'small.onnx', shape=(160, 192), classes=SEG_CLASSES)
    with pytest.raises(SetupError, match=r'takes images up to 160x192, and the test pipeline of .* makes them up to '
                                         r'192x192; export a graph that serves them all: python '
                                         r'tools/deployment/export_onnx.py .* CHECKPOINT --out .*small.onnx'):
        use_onnx_model(demo_config(SEG_CONFIG), small)
    use_onnx_model(demo_config(SEG_CONFIG), fixed_segmentation_graph(tmp_path / 'fits.onnx', shape=(192, 192),
                                                                     classes=SEG_CLASSES))


def test_an_old_fixed_shape_graph_without_the_pad_pixel_is_refused(tmp_path):
    path = constant_graph(tmp_path / 'old.onnx', dict(logits=np.zeros((1, 3, 8, 8), np.float32)), dict(
        task='segmentation', classes='["a", "b", "c"]', input_shape='8 8', export_shape='8 8', precision='fp32'))
    with pytest.raises(ValueError, match='without the pad pixel in its metadata .* export it again'):
        OnnxModel(path)
