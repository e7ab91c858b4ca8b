"""Structural checks of an exported graph: what makes it portable and fast on every ONNX runtime.

- every ConvNeXt norm is one ``LayerNormalization`` node (opset 17+), never the ReduceMean / Sub / Pow / Sqrt chain a
  hand-written norm exports as, which is slower and overflows in fp16;
- no ``Pow`` at all, and no ``ReduceMean`` computed from another ``ReduceMean`` (a variance);
- only the default ONNX domain: no custom ops (mmcv, mmdeploy, com.microsoft) that other runtimes lack;
- ``onnx.checker`` passes, with full shape inference.

GRN's channel mean of its spatial norms is a ``ReduceMean`` of a ``ReduceL2`` and passes.
"""
from typing import List

from torch import nn

from . import require

DEFAULT_DOMAINS = ('', 'ai.onnx')
# The ops a decomposed LayerNorm passes through between its two ReduceMeans (mean, then mean of squared deviations).
VARIANCE_PATH_OPS = ('Sub', 'Mul', 'Pow', 'Cast')


class GraphCheckError(RuntimeError):
    """The exported graph breaks one of the rules above; the message lists every problem found."""


def count_convnext_norms(model: nn.Module) -> int:
    """The LayerNorms of the model's ConvNeXt backbones (stem, downsampling, blocks, output norms), hierarchical or
    isotropic, and of its simple feature pyramid necks."""
    from ..models import ConvNeXt, ConvNeXtIsotropic, SimpleFeaturePyramid
    return sum(isinstance(m, nn.LayerNorm) for part in model.modules()
               if isinstance(part, (ConvNeXt, ConvNeXtIsotropic, SimpleFeaturePyramid)) for m in part.modules())


def find_problems(model_proto, expected_layer_norms: int) -> List[str]:
    """Everything wrong with ``model_proto`` (an ``onnx.ModelProto``), as sentences; empty when it passes."""
    onnx = require('onnx')
    problems = []
    nodes = list(model_proto.graph.node)
    for function in model_proto.functions:
        nodes.extend(function.node)
    foreign = sorted({f'{n.domain}::{n.op_type}' for n in nodes if n.domain not in DEFAULT_DOMAINS})
    if foreign:
        problems.append(f'ops outside the default ONNX domain: {", ".join(foreign)}')
    foreign_opsets = sorted(o.domain for o in model_proto.opset_import if o.domain not in DEFAULT_DOMAINS)
    if foreign_opsets:
        problems.append(f'opset imports outside the default ONNX domain: {", ".join(foreign_opsets)}')
    layer_norms = sum(n.op_type == 'LayerNormalization' for n in nodes)
    if layer_norms != expected_layer_norms:
        problems.append(f'{layer_norms} LayerNormalization nodes for the {expected_layer_norms} ConvNeXt norms of the '
                        'model (one each expected; export with opset 17 or later)')
    pows = [n.name for n in nodes if n.op_type == 'Pow']
    if pows:
        problems.append(f'{len(pows)} Pow nodes (a decomposed norm?), e.g. {pows[0]}')
    variances = _variance_reductions(model_proto.graph.node)
    if variances:
        problems.append(f'{len(variances)} ReduceMean nodes averaging a function of another ReduceMean (a decomposed '
                        f'norm), e.g. {variances[0]}')
    try:
        onnx.checker.check_model(model_proto, full_check=True)
    except onnx.checker.ValidationError as error:
        problems.append(f'onnx.checker: {error}')
    return problems


def check_graph(model_proto, expected_layer_norms: int) -> None:
    """Raise :class:`GraphCheckError` listing every problem :func:`find_problems` finds."""
    problems = find_problems(model_proto, expected_layer_norms)
    if problems:
        raise GraphCheckError('the exported graph fails its checks:\n- ' + '\n- '.join(problems))


def _variance_reductions(nodes) -> List[str]:
    producer = {output: node for node in nodes for output in node.output}

    def from_reduce_mean(tensor: str, depth: int) -> bool:
        node = producer.get(tensor)
        if node is None or depth == 0:
            return False
        if node.op_type == 'ReduceMean':
            return True
        return node.op_type in VARIANCE_PATH_OPS and any(from_reduce_mean(t, depth - 1) for t in node.input)

    return [n.name for n in nodes if n.op_type == 'ReduceMean' and from_reduce_mean(n.input[0], 3)]
