"""tools/deployment/export_onnx.py's engine: UperNet and backbone graphs, V1 and V2, run by onnxruntime at sizes other
than the export size give mmseg's own predictions; metadata travels in the file; bad requests are refused with the
fix."""
import json
import sys

import numpy as np
import pytest
import torch
from deploy_models import SEG_CONFIG, build, demo_config

onnx = pytest.importorskip('onnx', reason='onnx (the deploy extra) is not installed')
pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')

from convnext_dense.deploy.export import check_input, export  # noqa: E402
from convnext_dense.deploy.runtime import OnnxModel  # noqa: E402

EXPORT_SHAPE = (64, 96)


@pytest.fixture(scope='module', params=[1, 2], ids=['v1', 'v2'])
def segmentor(request, tmp_path_factory):
    """(model, export result) of a dynamic UperNet graph."""
    model = build(demo_config(SEG_CONFIG, request.param))
    out = tmp_path_factory.mktemp('seg') / 'upernet.onnx'
    return model, export(model, str(out), EXPORT_SHAPE, dynamic=True, config=str(SEG_CONFIG))


def mmseg_logits(model, image: np.ndarray) -> np.ndarray:
    """What mmseg's EncoderDecoder.predict gives for a (1, 3, H, W) BGR image that the test pipeline did not resize."""
    from mmseg.structures import SegDataSample
    shape = image.shape[2:]
    sample = SegDataSample(metainfo=dict(ori_shape=shape, img_shape=shape))
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[torch.from_numpy(image[0])], data_samples=[sample]), False)
        return model.predict(data['inputs'], data['data_samples'])[0].seg_logits.data.numpy()


def test_segmentor_graph_gives_mmseg_predictions_at_other_sizes(segmentor):
    model, result = segmentor
    assert [c.shape for c in result.checks] == [EXPORT_SHAPE, (55, 123)] and all(c.passed for c in result.checks)
    graph = OnnxModel(str(result.path))
    for size in [(75, 101), (130, 41)]:
        image = check_input(size, None, seed=size[0])
        logits = graph.run(image)['logits'][0]
        expected = mmseg_logits(model, image)
        assert logits.shape == expected.shape == (4, *size)
        np.testing.assert_allclose(logits, expected, atol=1e-4 * np.abs(expected).max())


def test_metadata_names_classes_input_format_and_output_layout(segmentor):
    _, result = segmentor
    meta = OnnxModel(str(result.path)).metadata
    assert json.loads(meta['classes']) == ['background', 'circle', 'square', 'triangle']
    assert 'BGR' in meta['input_format'] and '0-255' in meta['input_format'] and 'float32' in meta['input_format']
    assert meta['output_layout'].startswith('logits: float32 (1, num_classes, H, W)')
    assert (meta['task'], meta['input_shape'], meta['precision'], meta['opset']) == \
        ('segmentation', 'dynamic', 'fp32', '17')


@pytest.mark.parametrize('version', [1, 2])
def test_backbone_graph_gives_the_four_maps_at_any_size(version, tmp_path):
    model = build(demo_config(SEG_CONFIG, version))
    result = export(model, str(tmp_path / 'backbone.onnx'), EXPORT_SHAPE, dynamic=True, backbone_only=True)
    assert result.task == 'backbone' and all(c.passed for c in result.checks)
    graph = OnnxModel(str(result.path))
    image = check_input((70, 90), None, seed=3)
    maps = graph.run(image)
    with torch.no_grad():
        normalised = model.data_preprocessor(dict(inputs=[torch.from_numpy(image[0])]), False)['inputs']
        expected = model.backbone(normalised)
    assert graph.output_names == ['stage0', 'stage1', 'stage2', 'stage3']
    for name, reference, stride in zip(graph.output_names, expected, (4, 8, 16, 32)):
        assert maps[name].shape[2:] == (-(-70 // stride), -(-90 // stride))
        np.testing.assert_allclose(maps[name], reference.numpy(), atol=1e-4 * reference.abs().max().item())


def test_label_map_graph_of_fixed_size(tmp_path):
    model = build(demo_config(SEG_CONFIG, 2))
    result = export(model, str(tmp_path / 'labels.onnx'), EXPORT_SHAPE, labels=True)
    graph = OnnxModel(str(result.path))
    image = check_input(EXPORT_SHAPE, None, seed=5)
    labels = graph.run(image)['labels']
    assert labels.dtype == np.int64
    assert np.mean(labels[0] == mmseg_logits(model, image).argmax(0)) > 0.999
    with pytest.raises(ValueError, match=r'exported for images up to 64x96 and got one of 64x128; export it with '
                                         r'--shape H W \(at least 64 128\) or --dynamic'):
        graph.run(check_input((64, 128), None))
    assert graph.run(check_input((48, 80), None))['labels'].shape == (1, 64, 96)  # smaller ones are padded


def test_opset_below_layer_normalization_is_refused(tmp_path):
    model = build(demo_config(SEG_CONFIG))
    with pytest.raises(ValueError, match='opset 17..20'):
        export(model, str(tmp_path / 'x.onnx'), EXPORT_SHAPE, opset=16)


def test_missing_onnxruntime_names_the_extra(segmentor, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(ImportError, match=r'pip install "convnext-dense\[deploy\]"'):
        OnnxModel(str(segmentor[1].path))


def test_a_provider_onnxruntime_lacks_is_an_error_not_a_silent_cpu_run(segmentor):
    import onnxruntime
    if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has the CUDA provider (tests/gpu/test_onnx_cuda.py uses it)')
    with pytest.raises(ValueError, match='has no CUDAExecutionProvider .*install onnxruntime-gpu'):
        OnnxModel(str(segmentor[1].path), ['CUDAExecutionProvider', 'CPUExecutionProvider'])
    assert OnnxModel(str(segmentor[1].path)).providers == ['CPUExecutionProvider']
