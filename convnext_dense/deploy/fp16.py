"""Half-precision graphs that keep the numerically fragile ops in fp32, and a probe of fp16's range on real sizes.

:func:`to_fp16` converts the network's layers to fp16 except LayerNormalization, ConvNeXt V2's GRN (its sum of squares
over a feature map overflows fp16), RoiAlign and NonMaxSuppression (box coordinates and score ties) and the residual
additions, inserting Casts where the precisions meet. The residual stream of a trained ConvNeXt grows to magnitudes
where fp16's step is coarse, and each block adds a small layer-scaled update to it: in fp16 those updates are rounded
away, and the scores drift from fp32's (the README's Deploy section gives the figures). The arithmetic of the
export module around the layers (box decoding, mask pasting, the final resize) stays fp32. Shape arithmetic, constants
feeding it and the graph's inputs and outputs stay as exported (float32), so a converted graph is used exactly like
the fp32 one. Which inputs of an op follow its data's type comes from the op's ONNX schema (Resize's ``scales`` stay
float32, a Conv's weights become fp16).

ONNX Runtime's CPU kernels compute most fp16 ops in fp32, so a CPU cannot show an overflow that a GPU would hit.
:func:`probe_range` therefore runs the fp32 graph and reports the largest magnitude that each LayerNorm and GRN input,
and each tensor the fp16 graph keeps in fp16, reaches, against fp16's largest finite value (65504).
"""
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from . import require

FP16_MAX = 65504.
FP32_OPS = ('LayerNormalization', 'RoiAlign', 'NonMaxSuppression')
FP32_SCOPES = ('/grn/',)  # node names the exporter gives the ops of ConvNeXt V2's GRN modules
SHAPE_OPS = ('Shape', 'Size')  # read only the shape of their input, whatever its type
PROBE_CHUNK = 300  # tensors fetched per onnxruntime run by the probe, to bound its memory


def is_fp32_node(node, fp32_ops: Sequence[str] = FP32_OPS, fp32_scopes: Sequence[str] = FP32_SCOPES) -> bool:
    """Kept in fp32: the fragile ops, GRN, and the export module's own arithmetic outside the network's layers (the
    exporter names a layer's nodes '/layer/.../Op' and those of the module's forward '/Op'): box decoding, anchors,
    NMS inputs and mask pasting work in pixels, where fp16 is 1 px coarse above 1024."""
    outside_layers = node.name.count('/') < 2
    return outside_layers or node.op_type in fp32_ops or any(scope in node.name for scope in fp32_scopes)


def residual_additions(graph) -> Set[int]:
    """Indices of the skip-connection Adds: two computed tensors added, one of which also feeds another node (a
    bias or a constant added is no skip connection)."""
    constants = {init.name for init in graph.initializer}
    constants.update(t for node in graph.node if node.op_type == 'Constant' for t in node.output)
    uses = Counter(t for node in graph.node for t in node.input)
    residual = set()
    for index, node in enumerate(graph.node):
        computed = [t for t in node.input if t and t not in constants]
        if node.op_type == 'Add' and len(computed) == 2 and any(uses[t] > 1 for t in computed):
            residual.add(index)
    return residual


@dataclass
class Plan:
    """Which nodes run in fp16, which of their inputs follow the data type, and which tensors end up fp16."""
    fp16_nodes: Set[int] = field(default_factory=set)
    converted_inputs: Dict[int, List[int]] = field(default_factory=dict)
    half_tensors: Set[str] = field(default_factory=set)
    elem_types: Dict[str, int] = field(default_factory=dict)
    fp32_nodes: List[str] = field(default_factory=list)  # names of the nodes on image data kept in fp32


def plan_fp16(model_proto, fp32_ops: Sequence[str] = FP32_OPS, fp32_scopes: Sequence[str] = FP32_SCOPES) -> Plan:
    onnx = require('onnx')
    graph = model_proto.graph
    if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node
           for attr in n.attribute):
        raise ValueError('the graph has control flow (If / Loop / Scan), which the fp16 conversion does not handle; '
                         'export without --fp16')
    FLOAT = onnx.TensorProto.FLOAT
    inferred = onnx.shape_inference.infer_shapes(model_proto)
    elem_types = {v.name: v.type.tensor_type.elem_type
                  for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    elem_types.update({init.name: init.data_type for init in graph.initializer})
    opset = next(o.version for o in model_proto.opset_import if o.domain in ('', 'ai.onnx'))
    data = {v.name for v in graph.input}  # tensors computed from the image's values, not only its shape
    plan = Plan(elem_types=elem_types)
    residual = residual_additions(graph)
    for index, node in enumerate(graph.node):
        if node.op_type not in SHAPE_OPS and any(t in data for t in node.input):
            data.update(node.output)
        if index in residual or is_fp32_node(node, fp32_ops, fp32_scopes):
            if node.op_type not in SHAPE_OPS and any(t in data for t in node.input):
                plan.fp32_nodes.append(node.name)
            continue
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        constraints = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
        formal_in = [_formal(schema.inputs, i).type_str for i in range(len(node.input))]
        data_params = {formal_in[i] for i, t in enumerate(node.input)
                       if t in data and elem_types.get(t) == FLOAT and 'tensor(float16)' in constraints.get(
                           formal_in[i], ())}
        if not data_params:
            continue
        plan.fp16_nodes.add(index)
        plan.converted_inputs[index] = [i for i, t in enumerate(node.input)
                                        if t and formal_in[i] in data_params and elem_types.get(t) == FLOAT]
        for i, output in enumerate(node.output):
            follows = _formal(schema.outputs, i).type_str in data_params
            if node.op_type == 'Cast':
                follows = _cast_target(node) == FLOAT
            if output and follows and elem_types.get(output) == FLOAT:
                plan.half_tensors.add(output)
    return plan


def to_fp16(model_proto, fp32_ops: Sequence[str] = FP32_OPS, fp32_scopes: Sequence[str] = FP32_SCOPES,
            plan: Optional[Plan] = None):
    """A copy of ``model_proto`` computing in fp16 but for ``fp32_ops`` and the nodes named in ``fp32_scopes``;
    ``plan``: :func:`plan_fp16`'s for the same graph and arguments, when the caller already made it."""
    onnx = require('onnx')
    from onnx import helper, numpy_helper
    FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    plan = plan or plan_fp16(model, fp32_ops, fp32_scopes)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    half_initializers: Dict[str, str] = {}
    casts: Dict[Tuple[str, int], str] = {}
    nodes = []

    def as_type(tensor: str, target: int) -> str:
        if tensor in initializers and target == FLOAT16:
            if tensor not in half_initializers:
                array = numpy_helper.to_array(initializers[tensor]).astype(np.float16)
                half_initializers[tensor] = f'{tensor}/fp16'
                graph.initializer.append(numpy_helper.from_array(array, half_initializers[tensor]))
            return half_initializers[tensor]
        if (tensor, target) not in casts:
            casts[(tensor, target)] = f'{tensor}/cast_{"fp16" if target == FLOAT16 else "fp32"}'
            nodes.append(helper.make_node('Cast', [tensor], [casts[(tensor, target)]], to=target,
                                          name=casts[(tensor, target)]))
        return casts[(tensor, target)]

    for index, original in enumerate(graph.node):
        node = onnx.NodeProto()
        node.CopyFrom(original)
        if index in plan.fp16_nodes:
            for i in plan.converted_inputs[index]:
                if node.input[i] not in plan.half_tensors:
                    node.input[i] = as_type(node.input[i], FLOAT16)
            if node.op_type == 'Cast' and _cast_target(node) == FLOAT:
                next(a for a in node.attribute if a.name == 'to').i = FLOAT16
        elif node.op_type not in SHAPE_OPS:
            for i, tensor in enumerate(node.input):
                if tensor in plan.half_tensors:
                    node.input[i] = as_type(tensor, FLOAT)
        nodes.append(node)
    for output in graph.output:
        if output.name in plan.half_tensors:  # renamed: the fp32 output keeps its name behind a Cast
            half_name = f'{output.name}/fp16'
            for node in nodes:
                node.output[:] = [half_name if t == output.name else t for t in node.output]
                node.input[:] = [half_name if t == output.name else t for t in node.input]
            nodes.append(helper.make_node('Cast', [half_name], [output.name], to=FLOAT, name=f'{output.name}/cast'))
    unused = set(initializers) - {t for node in nodes for t in node.input}
    kept = [init for init in graph.initializer if init.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


def trtexec_command(onnx_path: str, fp32_nodes: Sequence[str], shape: Tuple[int, int], dynamic: bool) -> str:
    """The TensorRT build of an fp16 graph that keeps the same nodes in fp32. TensorRT's ONNX parser names each layer
    after its node, and ``--layerPrecisions`` takes exact names ('*' alone sets the default), hence the full list."""
    h, w = shape
    shapes = (f' --minShapes=image:1x3x32x32 --optShapes=image:1x3x{h}x{w} --maxShapes=image:1x3x{2 * h}x{2 * w}'
              if dynamic else '')
    precisions = ','.join(f'{name}:fp32' for name in fp32_nodes)
    return (f'trtexec --onnx={onnx_path} --fp16 --precisionConstraints=obey --layerPrecisions={precisions}{shapes} '
            f'--saveEngine={Path(onnx_path).with_suffix(".plan")}')


@dataclass
class ProbeReport:
    """Largest magnitudes reached in the fp32 graph, per group, with the tensor that reached them."""
    groups: Dict[str, List[Tuple[str, float]]]  # group -> [(tensor, max |value|)], largest first

    def peak(self, group: str) -> Tuple[str, float]:
        return self.groups[group][0] if self.groups[group] else ('-', 0.)

    def overflows(self) -> List[Tuple[str, float]]:
        """Tensors beyond the fp16 range, each once (a LayerNorm input is often kept in fp16 too), largest first."""
        found = {name: value for entries in self.groups.values() for name, value in entries if value > FP16_MAX}
        return sorted(found.items(), key=lambda e: -e[1])

    def lines(self, top: int = 3) -> List[str]:
        out = []
        for group, entries in self.groups.items():
            name, value = self.peak(group)
            out.append(f'{group}: {len(entries)} tensors, largest |x| = {value:.4g} ({value / FP16_MAX:.2%} of fp16 '
                       f'max 65504) in {name}')
            out.extend(f'    {n}: {v:.4g}' for n, v in entries[1:top])
        over = self.overflows()
        out.append(f'{len(over)} tensors exceed the fp16 range' + (f': {", ".join(n for n, _ in over[:5])}' if over
                                                                     else ''))
        return out


def probe_range(model_proto, inputs: Dict[str, np.ndarray], fp32_ops: Sequence[str] = FP32_OPS,
                fp32_scopes: Sequence[str] = FP32_SCOPES) -> ProbeReport:
    """Run the fp32 graph on ``inputs`` and measure LayerNorm inputs, GRN inputs and the tensors kept in fp16."""
    onnx = require('onnx')
    ort = require('onnxruntime')
    plan = plan_fp16(model_proto, fp32_ops, fp32_scopes)
    graph = model_proto.graph
    grn_produced = {t for n in graph.node if any(s in n.name for s in fp32_scopes) for t in n.output}
    groups = {
        'LayerNormalization inputs': sorted({n.input[0] for n in graph.node if n.op_type == 'LayerNormalization'}),
        'GRN inputs': sorted({t for n in graph.node if any(s in n.name for s in fp32_scopes) for t in n.input
                              if t and t not in grn_produced and plan.elem_types.get(t) == onnx.TensorProto.FLOAT
                              and t not in {i.name for i in graph.initializer}}),
        'tensors kept in fp16': sorted(plan.half_tensors),
    }
    wanted = sorted({t for tensors in groups.values() for t in tensors})
    peaks = {}
    for start in range(0, len(wanted), PROBE_CHUNK):
        chunk = [t for t in wanted[start:start + PROBE_CHUNK] if t not in {o.name for o in graph.output}]
        probe = onnx.ModelProto()
        probe.CopyFrom(model_proto)
        probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in chunk)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=['CPUExecutionProvider'])
        names = [o.name for o in session.get_outputs()]
        for name, value in zip(names, session.run(None, inputs)):
            if name in wanted:
                peaks[name] = float(np.abs(value).max()) if value.size else 0.
    return ProbeReport({group: sorted(((t, peaks[t]) for t in tensors), key=lambda e: -e[1])
                        for group, tensors in groups.items()})


def _formal(params, index: int):
    """The schema parameter of the ``index``-th actual input or output (the last one repeats when variadic)."""
    return params[min(index, len(params) - 1)]


def _cast_target(node) -> int:
    return next(a.i for a in node.attribute if a.name == 'to')
