"""The structural rules of exported graphs: one LayerNormalization per ConvNeXt norm, no decomposed norms, the default
ONNX domain only, onnx.checker; and that a graph breaking them is caught."""
import io

import pytest
import torch
from deploy_models import SEG_CONFIG, build, demo_config

onnx = pytest.importorskip('onnx', reason='onnx (the deploy extra) is not installed')
pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')

from convnext_dense.deploy.export import export  # noqa: E402
from convnext_dense.deploy.graph_checks import GraphCheckError, check_graph, count_convnext_norms, find_problems  # noqa: E402,E501

ATTO_NORMS = 1 + 3 + 12 + 4  # stem, downsampling, blocks (2 + 2 + 6 + 2), output norms


@pytest.mark.parametrize('version', [1, 2])
def test_one_layer_normalization_per_norm_and_nothing_decomposed(version, tmp_path):
    model = build(demo_config(SEG_CONFIG, version))
    assert count_convnext_norms(model) == ATTO_NORMS
    path = export(model, str(tmp_path / 'm.onnx'), (64, 64), dynamic=True).path
    graph = onnx.load(str(path))
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count('LayerNormalization') == ATTO_NORMS and 'Pow' not in ops
    assert {n.domain for n in graph.graph.node} <= {''} and [o.domain for o in graph.opset_import] == ['']
    producers = {out: n.op_type for n in graph.graph.node for out in n.output}
    reduce_means = [n for n in graph.graph.node if n.op_type == 'ReduceMean']
    # V2's GRN averages its spatial norms (a ReduceL2) over channels: one ReduceMean per block, nothing else.
    assert len(reduce_means) == (12 if version == 2 else 0)
    assert all(producers[n.input[0]] == 'ReduceL2' for n in reduce_means)
    assert find_problems(graph, ATTO_NORMS) == []


class HandWrittenNorm(torch.nn.Module):
    """The official ConvNeXt's channels-first LayerNorm, written out: it exports as ReduceMean / Sub / Pow chains."""

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) / torch.sqrt(variance + 1e-6)


def exported(module, x):
    buffer = io.BytesIO()
    torch.onnx.export(module, (x, ), buffer, dynamo=False, opset_version=17)
    return onnx.load_from_string(buffer.getvalue())


def test_a_decomposed_norm_is_caught():
    graph = exported(HandWrittenNorm(), torch.randn(1, 8, 4, 4))
    with pytest.raises(GraphCheckError) as error:
        check_graph(graph, expected_layer_norms=1)
    message = str(error.value)
    assert '0 LayerNormalization nodes for the 1 ConvNeXt norms' in message
    assert 'Pow nodes' in message and 'ReduceMean nodes averaging a function of another ReduceMean' in message


def test_custom_domains_and_invalid_graphs_are_caught():
    graph = exported(torch.nn.ReLU(), torch.randn(2, 3))
    custom = onnx.helper.make_node('FusedGelu', [graph.graph.output[0].name], ['gelu'], domain='com.microsoft')
    graph.graph.node.append(custom)
    graph.opset_import.append(onnx.helper.make_opsetid('com.microsoft', 1))
    problems = find_problems(graph, expected_layer_norms=0)
    assert 'ops outside the default ONNX domain: com.microsoft::FusedGelu' in problems
    assert 'opset imports outside the default ONNX domain: com.microsoft' in problems
    graph.graph.node.append(onnx.helper.make_node('Relu', ['undefined_tensor'], ['y']))
    assert any(p.startswith('onnx.checker:') for p in find_problems(graph, expected_layer_norms=0))
