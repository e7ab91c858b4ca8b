"""Export a detector, segmentor or backbone to ONNX, with its metadata, and check the graph against PyTorch.

The TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) traces the mmdet / mmseg Python code as it runs
on one image; the newer torch.export-based exporter cannot follow their data-dependent post-processing. PyTorch warns
that the TorchScript exporter is deprecated; that warning and the tracer's (static Python checks on shapes, taken as
constants) are silenced here, and instead every export is checked in onnxruntime against PyTorch, at a second size when
the graph has a dynamic size, before it is reported as done.
"""
import copy
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..evaluation.detection_matching import match_detections
from . import require
from .graph_checks import check_graph, count_convnext_norms
from .segmentor_graph import BackboneGraph, SegmentorGraph

MIN_OPSET, MAX_OPSET = 17, 20  # LayerNormalization is opset 17; torch's TorchScript exporter stops at 20
INPUT_NAME = 'image'
INPUT_FORMAT = ('image: float32 (1, 3, H, W), BGR channel order as OpenCV reads images, values 0-255, not normalised '
                'and not padded: the graph converts channels, normalises and pads as the config\'s data preprocessor '
                'does. Feed the image after the test pipeline\'s resize.')
# Largest |ONNX - PyTorch| accepted, relative to the largest |PyTorch| value (at least 1): float outputs.
TOLERANCE = dict(fp32=1e-3, fp16=1e-2)
# Label maps and masks: the share of pixels allowed to differ (ties at the argmax / threshold).
PIXEL_TOLERANCE = dict(fp32=1e-3, fp16=1e-2)
# Detections, matched one to one: box corners (pixels, relative to the image's longer side) and scores.
BOX_TOLERANCE = dict(fp32=1e-3, fp16=5e-3)
SCORE_TOLERANCE = dict(fp32=1e-3, fp16=1e-2)


class ParityError(RuntimeError):
    """The exported graph's outputs differ from PyTorch's beyond the tolerance."""


@dataclass
class SizeCheck:
    shape: Tuple[int, int]
    differences: Dict[str, float]  # what was compared -> largest difference
    limits: Dict[str, float]

    @property
    def passed(self) -> bool:
        return all(self.differences[k] <= self.limits[k] for k in self.differences)

    def describe(self) -> str:
        parts = [f'{k} {self.differences[k]:.3g} (limit {self.limits[k]:.3g})' for k in self.differences]
        return f'{self.shape[0]}x{self.shape[1]}: ' + ', '.join(parts)


@dataclass
class ExportResult:
    path: Path
    task: str
    precision: str
    shape: Tuple[int, int]
    dynamic: bool
    layer_norms: int
    metadata: Dict[str, str]
    fp32_graph: object  # the onnx.ModelProto before any fp16 conversion, for the range probe
    checks: List[SizeCheck] = field(default_factory=list)
    providers: List[str] = field(default_factory=list)  # the onnxruntime session's that checked the graph
    fp32_nodes: List[str] = field(default_factory=list)  # fp16 graphs: the nodes on image data kept in fp32

    def summary(self) -> List[str]:
        lines = [f'exported {self.task} graph to {self.path} ({self.precision}, opset {self.metadata["opset"]}, '
                 f'input {"any size" if self.dynamic else "%dx%d" % self.shape}; {self.layer_norms} '
                 'LayerNormalization nodes, one per ConvNeXt norm; default ONNX domain; onnx.checker passed)']
        lines += [f'onnxruntime ({self.providers[0]}) vs PyTorch, largest difference at ' + check.describe()
                  for check in self.checks]
        return lines


def model_task(model: nn.Module, backbone_only: bool = False) -> str:
    if backbone_only:
        return 'backbone'
    try:
        from mmseg.models.segmentors import EncoderDecoder
        if isinstance(model, EncoderDecoder):
            return 'segmentation'
    except ImportError:
        pass
    try:
        from mmdet.models.detectors import TwoStageDetector
        if isinstance(model, TwoStageDetector):
            return 'detection'
    except ImportError:
        pass
    raise ValueError(f'cannot export a {type(model).__name__}: the export handles mmseg EncoderDecoder segmentors '
                     '(UperNet), mmdet two-stage detectors (Mask R-CNN, Cascade Mask R-CNN) and, with '
                     '--backbone-only, the backbone of any of them')


def pad_pixel(preprocess: nn.Module) -> List[float]:
    """The input pixel (BGR, 0-255) that normalises to the data preprocessor's pad value: padding a raw image with it
    is padding the normalised image with the pad value, as mmdet's and mmseg's batch padding does."""
    pixel = (preprocess.pad_value * preprocess.std + preprocess.mean).flatten()
    return [float(v) for v in (pixel.flip(0) if preprocess.bgr_to_rgb else pixel)]


def build_graph(model: nn.Module, task: str, labels: bool = False) -> Tuple[nn.Module, Tuple[str, ...], str]:
    """The export module (eval mode) of a copy of ``model``, its output names and a description of its outputs."""
    model = copy.deepcopy(model).float()
    if task == 'segmentation':
        if labels:
            graph, names = SegmentorGraph(model, labels=True), ('labels', )
            layout = 'labels: int64 (1, H, W), the class index of each input pixel'
        else:
            graph, names = SegmentorGraph(model), ('logits', )
            layout = 'logits: float32 (1, num_classes, H, W) at the input size (argmax: classes; one channel: sigmoid)'
    elif task == 'backbone':
        backbone = model.backbone
        names = tuple(f'stage{i}' for i in backbone.out_indices)
        graph, layout = BackboneGraph(model), '; '.join(
            f'{name}: float32 (1, {c}, ceil(H/{s}), ceil(W/{s}))'
            for name, c, s in zip(names, backbone.out_channels, backbone.out_strides))
    else:
        from .detector_graph import OUTPUT_NAMES, DetectorGraph
        graph, names = DetectorGraph(model), OUTPUT_NAMES
        layout = ('boxes: float32 (N, 4) x1, y1, x2, y2 in input pixels; scores: float32 (N,); labels: int64 (N,) '
                  'indices into classes; masks: uint8 (N, H, W) 0/1 at the input size; mask_probabilities: float32 '
                  '(N, h, w) each box\'s mask of its class on the mask head\'s grid, to paste along the box at '
                  'another size (threshold: metadata mask_threshold)')
    return graph.eval(), names, layout


def export(model: nn.Module, out: str, shape: Sequence[int], dynamic: bool = False, fp16: bool = False,
           opset: int = MIN_OPSET, backbone_only: bool = False, labels: bool = False, config: str = '',
           check_image: Optional[np.ndarray] = None, providers: Optional[List[str]] = None) -> ExportResult:
    """Export ``model`` (an mmdet / mmseg model with its ``dataset_meta``) to ``out`` and check it; raises
    :class:`~.graph_checks.GraphCheckError` or :class:`ParityError` (the file is kept for inspection) on failure.

    ``check_image``: a BGR uint8 image (H, W, 3) to compare on, resized to each size checked; random pixels
    otherwise (trained detectors may find nothing in them). ``providers``: onnxruntime's execution providers for the
    check, first choice first (default: the CPU's)."""
    onnx = require('onnx')
    require('onnxruntime')
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f'--opset {opset}: the export needs opset {MIN_OPSET}..{MAX_OPSET} (LayerNormalization is '
                         f'opset 17; torch\'s TorchScript exporter supports up to {MAX_OPSET})')
    shape = (int(shape[0]), int(shape[1]))
    task = model_task(model, backbone_only)
    module, output_names, layout = build_graph(model, task, labels)
    precision = 'fp16' if fp16 else 'fp32'
    proto = _trace(module, shape, output_names, dynamic, task, opset)
    layer_norms = count_convnext_norms(module)
    check_graph(proto, layer_norms)
    fp32_graph, fp32_nodes = proto, []
    if fp16:
        from .fp16 import FP32_OPS, plan_fp16, to_fp16
        plan = plan_fp16(proto)
        fp32_nodes = plan.fp32_nodes
        proto = to_fp16(proto, plan=plan)
        check_graph(proto, layer_norms)
        precision = (f'fp16 ({", ".join(FP32_OPS)}, ConvNeXt V2 GRN, the residual additions and the arithmetic '
                     'outside the layers in fp32)')
    metadata = _metadata(model, task, shape, dynamic, precision, layout, config, opset)
    metadata['pad_pixel'] = json.dumps(pad_pixel(module.preprocess))
    onnx.helper.set_model_props(proto, metadata)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    result = ExportResult(path, task, precision, shape, dynamic, layer_norms, metadata, fp32_graph,
                          fp32_nodes=fp32_nodes)
    from .runtime import OnnxModel
    session = OnnxModel(str(path), providers)
    result.providers = session.providers
    for size in check_shapes(shape, dynamic):
        result.checks.append(compare(module, session, task, size, 'fp16' if fp16 else 'fp32', check_image))
    failed = [check for check in result.checks if not check.passed]
    if failed:
        raise ParityError(f'{path}: onnxruntime and PyTorch disagree beyond the tolerance at '
                          + '; '.join(c.describe() for c in failed)
                          + '. The file is kept for inspection; do not deploy it.')
    return result


def check_shapes(shape: Tuple[int, int], dynamic: bool) -> List[Tuple[int, int]]:
    """The export size and, for a dynamic graph, another that is no multiple of 32 in either side."""
    if not dynamic:
        return [shape]
    return [shape, (max(40, shape[0] * 3 // 4 + 7), shape[1] * 5 // 4 + 3)]


def check_input(size: Tuple[int, int], image: Optional[np.ndarray], seed: int = 0) -> np.ndarray:
    """The (1, 3, H, W) float32 BGR 0-255 input compared on: ``image`` resized, or seeded random pixels."""
    if image is None:
        pixels = np.random.default_rng(seed).integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
    else:
        import cv2
        pixels = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None].astype(np.float32))


def compare(module: nn.Module, session, task: str, size: Tuple[int, int], precision: str,
            image: Optional[np.ndarray] = None) -> SizeCheck:
    """Run ``module`` (PyTorch) and ``session`` (an :class:`~.runtime.OnnxModel`) on one input and measure the
    largest differences of their outputs."""
    x = check_input(size, image)
    with torch.no_grad():
        reference = module(torch.from_numpy(x))
    reference = [r.numpy() for r in (reference if isinstance(reference, (tuple, list)) else (reference, ))]
    outputs = session.run(x)
    names = session.output_names
    if task == 'detection':
        match = match_detections(_as_instances(dict(zip(names, reference))), _as_instances(outputs),
                                 box_tolerance=0.05 * max(size))
        differences = dict(unmatched=float(match.unmatched), box=match.box, score=match.score,
                           mask_pixels=match.mask_pixels)
        limits = dict(unmatched=0, box=BOX_TOLERANCE[precision] * max(size), score=SCORE_TOLERANCE[precision],
                      mask_pixels=PIXEL_TOLERANCE[precision])
        return SizeCheck(size, differences, limits)
    differences, limits = {}, {}
    for name, ref in zip(names, reference):
        got = outputs[name]
        if got.shape != ref.shape:
            differences[f'{name} shape'], limits[f'{name} shape'] = 1., 0.
        elif np.issubdtype(ref.dtype, np.integer):
            differences[f'{name} pixels'] = float(np.mean(got != ref))
            limits[f'{name} pixels'] = PIXEL_TOLERANCE[precision]
        else:
            differences[name] = float(np.abs(got.astype(np.float32) - ref).max())
            limits[name] = TOLERANCE[precision] * max(1., float(np.abs(ref).max()))
    return SizeCheck(size, differences, limits)


def _as_instances(outputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """A detector graph's outputs under mmdet's InstanceData names."""
    return dict(bboxes=outputs['boxes'], scores=outputs['scores'], labels=outputs['labels'], masks=outputs['masks'])


def _trace(module: nn.Module, shape: Tuple[int, int], output_names: Tuple[str, ...], dynamic: bool, task: str,
           opset: int):
    onnx = require('onnx')
    dynamic_axes = {}
    if dynamic:
        dynamic_axes[INPUT_NAME] = {2: 'height', 3: 'width'}
        if task == 'segmentation':
            dynamic_axes[output_names[0]] = {1: 'height', 2: 'width'} if output_names == ('labels', ) \
                else {2: 'height', 3: 'width'}
        elif task == 'backbone':
            dynamic_axes.update({name: {2: f'{name}_height', 3: f'{name}_width'} for name in output_names})
    if task == 'detection':  # the number of detections is never fixed
        for name in output_names:
            dynamic_axes[name] = {0: 'detections', **({1: 'height', 2: 'width'} if dynamic and name == 'masks'
                                                      else {})}
    image = torch.from_numpy(check_input(shape, None))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='You are using the legacy TorchScript-based ONNX export')
        warnings.filterwarnings('ignore', category=DeprecationWarning, module=r'torch\.onnx')
        # indices into boxes here come from nonzero / topk / NMS, never negative
        warnings.filterwarnings('ignore', message='Exporting aten::index operator of advanced indexing')
        torch.onnx.export(module, (image, ), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=list(output_names), dynamic_axes=dynamic_axes or None,
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def _metadata(model: nn.Module, task: str, shape: Tuple[int, int], dynamic: bool, precision: str, layout: str,
              config: str, opset: int) -> Dict[str, str]:
    from ..version import __version__
    meta = getattr(model, 'dataset_meta', None) or {}
    metadata = dict(
        task=task, classes=json.dumps(list(meta.get('classes') or ())), input_format=INPUT_FORMAT,
        input_shape='dynamic' if dynamic else f'{shape[0]} {shape[1]}', export_shape=f'{shape[0]} {shape[1]}',
        output_layout=layout, precision=precision, opset=str(opset), config=config,
        producer=f'convnext_dense {__version__}, torch {torch.__version__}')
    if task == 'detection':
        metadata.update(mask_threshold=str(float(model.roi_head.test_cfg.mask_thr_binary)))
    if task == 'segmentation':
        metadata.update(align_corners=json.dumps(bool(model.decode_head.align_corners)),
                        threshold=str(float(getattr(model.decode_head, 'threshold', 0.5) or 0.5)))
    return metadata
