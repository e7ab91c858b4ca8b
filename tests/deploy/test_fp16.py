"""--fp16 graphs: LayerNormalization, GRN and the residual stream stay fp32, the rest computes in fp16 within the
stated tolerance of the fp32 graph at any size; the range probe measures what a GPU's fp16 would have to hold, and
finds an overflow."""
import re

import numpy as np
import pytest
from deploy_models import CASCADE_CONFIG, SEG_CONFIG, build, demo_config

onnx = pytest.importorskip('onnx', reason='onnx (the deploy extra) is not installed')
pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')

from convnext_dense.deploy.export import TOLERANCE, check_input, export  # noqa: E402
from convnext_dense.deploy.fp16 import FP16_MAX, probe_range, to_fp16, trtexec_command  # noqa: E402
from convnext_dense.deploy.runtime import OnnxModel  # noqa: E402

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(scope='module')
def v2_model():
    return build(demo_config(SEG_CONFIG, 2))


def test_fp16_graph_keeps_norms_and_grn_in_fp32_and_matches_fp32(v2_model, tmp_path):
    fp32 = export(v2_model, str(tmp_path / 'fp32.onnx'), (64, 96), dynamic=True)
    half = export(v2_model, str(tmp_path / 'fp16.onnx'), (64, 96), dynamic=True, fp16=True)
    assert all(c.passed for c in half.checks) and half.precision.startswith('fp16 (LayerNormalization')
    graph = onnx.load(str(half.path))
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.graph.value_info, *graph.graph.input,
                                                              *graph.graph.output]}
    types.update({i.name: i.data_type for i in graph.graph.initializer})
    norms = [n for n in graph.graph.node if n.op_type == 'LayerNormalization']
    assert len(norms) == 20 and all(types[t] == FLOAT for n in norms for t in [*n.input, *n.output])
    grn = [n for n in graph.graph.node if '/grn/' in n.name and n.op_type in ('ReduceL2', 'ReduceMean', 'Mul', 'Add')]
    assert grn and all(types[n.output[0]] == FLOAT for n in grn)
    convs = [n for n in graph.graph.node if n.op_type == 'Conv']
    assert convs and all(types[n.input[1]] == FLOAT16 for n in convs)
    # the residual stream: each block's skip-connection Add in fp32, its branch (dwconv onwards) in fp16
    residual = [n for n in graph.graph.node if re.fullmatch(r'/backbone/stages\.\d+\.\d+/Add', n.name)]
    assert len(residual) == sum(v2_model.backbone.depths) and all(types[n.output[0]] == FLOAT for n in residual)
    dwconvs = [n for n in convs if n.name.endswith('/dwconv/Conv')]
    assert len(dwconvs) == len(residual) and all(types[n.output[0]] == FLOAT16 for n in dwconvs)
    # what TensorRT must pin to fp32: exactly the nodes on image data the graph keeps in fp32
    kept = set(half.fp32_nodes)
    assert {n.name for n in [*norms, *grn, *residual]} <= kept and not kept & {n.name for n in convs}
    assert all(types.get(n.output[0]) != FLOAT16 for n in graph.graph.node if n.name in kept)
    command = trtexec_command('m.onnx', half.fp32_nodes, (64, 96), dynamic=True)
    assert f'--layerPrecisions={half.fp32_nodes[0]}:fp32,' in command and '--maxShapes=image:1x3x128x192' in command
    assert types['image'] == types['logits'] == FLOAT
    for size in [(64, 96), (77, 50)]:
        image = check_input(size, None, seed=1)
        reference = OnnxModel(str(fp32.path)).run(image)['logits']
        logits = OnnxModel(str(half.path)).run(image)['logits']
        difference = np.abs(logits - reference).max()
        assert 0 < difference <= TOLERANCE['fp16'] * np.abs(reference).max(), (size, difference)


def test_fp16_detector_keeps_the_arithmetic_in_pixels_in_fp32(tmp_path):
    """Box decoding, anchors and mask pasting work in pixels, where fp16 is 1 px coarse above 1024: only the network's
    layers compute in fp16, and a cascade, which decodes boxes three times, stays within the fp16 tolerances."""
    half = export(build(demo_config(CASCADE_CONFIG)), str(tmp_path / 'fp16.onnx'), (192, 256), dynamic=True,
                  fp16=True)
    assert all(c.passed for c in half.checks), half.summary()
    graph = onnx.load(str(half.path))
    types = {v.name: v.type.tensor_type.elem_type for v in graph.graph.value_info}
    outside = [n for n in graph.graph.node if n.name.startswith('/') and n.name.count('/') == 1]
    decoding = [n for n in outside if n.op_type in ('Exp', 'Mul', 'Add', 'Sub', 'MatMul')]
    assert decoding and not any(types.get(n.output[0]) == FLOAT16 for n in decoding)
    layers = [n for n in graph.graph.node if n.op_type in ('Conv', 'Gemm') and '/bbox_head' in n.name]
    assert layers and all(types[n.output[0]] == FLOAT16 for n in layers)


def test_probe_measures_norm_and_grn_inputs_and_finds_an_overflow(v2_model, tmp_path):
    proto = export(v2_model, str(tmp_path / 'm.onnx'), (64, 64)).fp32_graph
    image = {'image': check_input((64, 64), None)}
    report = probe_range(proto, image)
    assert [len(report.groups[g]) for g in ('LayerNormalization inputs', 'GRN inputs')] == [20, 12]
    assert 0 < report.peak('LayerNormalization inputs')[1] < FP16_MAX and not report.overflows()
    assert report.peak('tensors kept in fp16')[1] >= 255  # the image itself, before normalisation
    # A stem 10^5 times stronger: its LayerNorm's input leaves the fp16 range, and the probe says which tensor.
    stem = next(i for i in proto.graph.initializer if i.name == 'model.backbone.downsample_layers.0.0.weight')
    stem.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(stem) * 1e5, stem.name))
    report = probe_range(proto, image)
    over = dict(report.overflows())
    assert over and any('downsample_layers.0' in name for name in over)
    assert report.lines()[-1].startswith(f'{len(over)} tensors exceed the fp16 range')


def test_conversion_refuses_control_flow():
    body = onnx.helper.make_graph([onnx.helper.make_node('Identity', ['x'], ['y'])], 'body', [],
                                  [onnx.helper.make_tensor_value_info('y', FLOAT, [1])])
    node = onnx.helper.make_node('If', ['c'], ['out'], then_branch=body, else_branch=body)
    graph = onnx.helper.make_graph([node], 'g', [onnx.helper.make_tensor_value_info('c', onnx.TensorProto.BOOL, []),
                                                 onnx.helper.make_tensor_value_info('x', FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info('out', FLOAT, [1])])
    with pytest.raises(ValueError, match='control flow'):
        to_fp16(onnx.helper.make_model(graph))
