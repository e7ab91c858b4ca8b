"""Export graph of mmdet's Mask R-CNN and Cascade Mask R-CNN: image -> boxes, scores, labels, masks.

mmdet's test-time post-processing (anchors, box decoding, NMS, RoI pooling, mask pasting) is Python over
data-dependent shapes; traced as it is, it freezes the input size and records mmcv's custom ops. :class:`DetectorGraph`
runs the model's own layers (backbone, neck, RPN convs, box and mask heads) and redoes that glue as vectorised tensor
code, computing every size from the traced input shape, so that one graph serves any image size, with two standard
ONNX ops for the rest: ``RoiAlign`` (opset 16+, ``half_pixel`` as mmcv's aligned RoIAlign) and ``NonMaxSuppression``.
In PyTorch both run mmcv's kernels, so the module reproduces ``model.predict`` (see :class:`DetectorGraph`).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.onnx.operators import shape_as_tensor

from .segmentor_graph import Preprocess

OUTPUT_NAMES = ('boxes', 'scores', 'labels', 'masks', 'mask_probabilities')
SUPPORTED = ('mmdet Mask R-CNN and Cascade Mask R-CNN: a TwoStageDetector with a neck, an RPNHead (sigmoid scores, '
             'AnchorGenerator), a StandardRoIHead or CascadeRoIHead with SingleRoIExtractors pooling by aligned '
             'average RoIAlign, BBoxHead / ConvFCBBoxHead box heads decoding with DeltaXYWHBBoxCoder, FCNMaskHeads '
             'and plain NMS')
NO_LIMIT = 2**31 - 1  # max_per_img <= 0: keep everything NMS keeps


class RoiAlign(torch.autograd.Function):
    """mmcv's aligned average RoIAlign in PyTorch, the standard ONNX ``RoiAlign`` in the graph.

    mmcv's own symbolic shifts the boxes by half a cell by hand and leaves ONNX's default ``output_half_pixel`` mode,
    whose runtimes also stretch small boxes to one cell; ``half_pixel`` is exactly mmcv's ``aligned=True``.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, boxes: torch.Tensor, batch_indices: torch.Tensor,
                output_size: Tuple[int, int], spatial_scale: float, sampling_ratio: int) -> torch.Tensor:
        from mmcv.ops import roi_align
        rois = torch.cat([batch_indices[:, None].to(boxes.dtype), boxes], dim=1)
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, 'avg', True)

    @staticmethod
    def symbolic(g, features, boxes, batch_indices, output_size, spatial_scale, sampling_ratio):
        return g.op('RoiAlign', features, boxes, batch_indices, output_height_i=output_size[0],
                    output_width_i=output_size[1], spatial_scale_f=spatial_scale, sampling_ratio_i=sampling_ratio,
                    mode_s='avg', coordinate_transformation_mode_s='half_pixel')


class NonMaxSuppression(torch.autograd.Function):
    """mmcv's NMS in PyTorch, ONNX ``NonMaxSuppression`` in the graph, with the ONNX op's interface: boxes (B, N, 4)
    x1y1x2y2, scores (B, C, N) -> selected (K, 3) int64 rows (batch, class, box), each (batch, class) in descending
    score order: at most ``max_output_boxes_per_class`` of the boxes scoring above ``score_threshold`` (None: all),
    dropping those that overlap a kept one by IoU > ``iou_threshold``."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, max_output_boxes_per_class: int,
                iou_threshold: float, score_threshold: Optional[float]) -> torch.Tensor:
        from mmcv.ops import nms
        selected = []
        for batch in range(scores.shape[0]):
            for cls in range(scores.shape[1]):
                candidates = torch.arange(scores.shape[2], device=scores.device) if score_threshold is None else \
                    (scores[batch, cls] > score_threshold).nonzero().squeeze(1)
                keep = nms(boxes[batch, candidates], scores[batch, cls, candidates], iou_threshold)[1]
                keep = candidates[keep[:max_output_boxes_per_class]]
                selected.append(torch.stack([torch.full_like(keep, batch), torch.full_like(keep, cls), keep], dim=1))
        return torch.cat(selected)

    @staticmethod
    def symbolic(g, boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold):
        inputs = [g.op('Constant', value_t=torch.tensor([max_output_boxes_per_class], dtype=torch.int64)),
                  g.op('Constant', value_t=torch.tensor([iou_threshold], dtype=torch.float32))]
        if score_threshold is not None:
            inputs.append(g.op('Constant', value_t=torch.tensor([score_threshold], dtype=torch.float32)))
        return g.op('NonMaxSuppression', boxes, scores, *inputs)


class UnsupportedDetectorError(TypeError):
    """The detector is not one :class:`DetectorGraph` can export."""


class DetectorGraph(nn.Module):
    """An mmdet Mask R-CNN or Cascade Mask R-CNN (built, weights loaded) as image -> detections.

    Input: float32 (1, 3, H, W), BGR, 0-255, neither normalised nor padded (the data preprocessor's work is inside).
    Outputs (:data:`OUTPUT_NAMES`): boxes float32 (N, 4) x1y1x2y2 in input pixels, scores float32 (N,), labels int64
    (N,), masks uint8 (N, H, W) 0/1 at the input size, and mask_probabilities float32 (N, 28, 28), each box's mask of
    its class on the mask head's grid, before pasting; N is 0 when nothing passes the score threshold.

    The results are ``model.predict``'s on the same image with ``rescale=True`` and no resize (mmdet's CPU mask
    pasting included), read from the model: preprocessing, anchors, box coders and its heads' test_cfg. After a resize,
    mmdet pastes the mask probabilities on the original image along the boxes scaled back, not the binary masks of the
    resized one: ``mask_probabilities`` lets a runtime do the same (:func:`paste_masks`), as tools/test.py does.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        _check_supported(model)
        preprocessor = model.data_preprocessor
        self.preprocess = Preprocess(preprocessor, preprocessor.pad_size_divisor, preprocessor.pad_value)
        self.model = model
        roi_head = model.roi_head
        multi_stage = isinstance(roi_head.bbox_head, nn.ModuleList)
        self.box_stages = tuple(zip(roi_head.bbox_roi_extractor, roi_head.bbox_head)) if multi_stage else \
            ((roi_head.bbox_roi_extractor, roi_head.bbox_head), )
        self.mask_stages = tuple(zip(roi_head.mask_roi_extractor, roi_head.mask_head)) if multi_stage else \
            ((roi_head.mask_roi_extractor, roi_head.mask_head), )
        prior_generator = model.rpn_head.prior_generator
        for level, anchors in enumerate(prior_generator.base_anchors):
            self.register_buffer(f'base_anchors{level}', anchors.detach().float().clone(), persistent=False)
        self.anchor_strides = [tuple(stride) for stride in prior_generator.strides]
        rpn_cfg, rcnn_cfg = model.rpn_head.test_cfg, roi_head.test_cfg
        self.nms_pre = int(rpn_cfg.get('nms_pre', -1))
        self.min_box_size = float(rpn_cfg.get('min_bbox_size', -1))
        self.rpn_iou = _nms_iou(rpn_cfg.nms, 'test_cfg.rpn.nms')
        self.num_proposals = _max_output(rpn_cfg.max_per_img)
        self.score_threshold = float(rcnn_cfg.score_thr)
        self.rcnn_iou = _nms_iou(rcnn_cfg.nms, 'test_cfg.rcnn.nms')
        self.max_detections = _max_output(rcnn_cfg.max_per_img)
        self.mask_threshold = float(rcnn_cfg.mask_thr_binary)
        # In eval mode from the start: torch.onnx.export puts a module back in the mode it found it in, and a
        # training-mode wrapper would leave the model training (drop path on) after the export.
        self.eval()

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        features = self.model.extract_feat(self.preprocess(image))
        image_size = shape_as_tensor(image)[2:]  # traced: the graph reads the size of each input it gets
        bounds = image_size.flip(0).repeat(2).to(features[0].dtype)  # (W, H, W, H): decoded boxes are clipped to it
        proposals = self._proposals(features, bounds)
        boxes, scores, labels = self._detections(features, proposals, bounds)
        probabilities = self._mask_probabilities(features, boxes, labels)
        masks = (paste_masks(probabilities, boxes, image.shape[-2], image.shape[-1]) >= self.mask_threshold)
        return boxes, scores, labels, masks.to(torch.uint8), probabilities

    def _proposals(self, features: Tuple[torch.Tensor, ...], bounds: torch.Tensor) -> torch.Tensor:
        """RPNHead.predict: each level's ``nms_pre`` best anchors, decoded, small boxes dropped, NMS per level."""
        rpn_head = self.model.rpn_head
        boxes, scores, levels = [], [], []
        for level, (logits, deltas) in enumerate(zip(*rpn_head(features))):
            level_scores = logits[0].permute(1, 2, 0).reshape(-1).sigmoid()
            deltas = deltas[0].permute(1, 2, 0).reshape(-1, 4)
            anchors = self._anchors(level, logits)
            if self.nms_pre > 0:
                top = level_scores.topk(torch.clamp(shape_as_tensor(level_scores)[0], max=self.nms_pre)).indices
                level_scores, deltas, anchors = level_scores[top], deltas[top], anchors[top]
            boxes.append(_decode(rpn_head.bbox_coder, anchors, deltas, bounds))
            scores.append(level_scores)
            levels.append(torch.full_like(level_scores, level, dtype=torch.int64))
        boxes, scores, levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
        if self.min_box_size >= 0:
            sizes = boxes[:, 2:] - boxes[:, :2]
            valid = ((sizes[:, 0] > self.min_box_size) & (sizes[:, 1] > self.min_box_size)).nonzero().squeeze(1)
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        return boxes[_batched_nms(boxes, scores, levels, self.rpn_iou, self.num_proposals)]

    def _anchors(self, level: int, feature: torch.Tensor) -> torch.Tensor:
        """AnchorGenerator's anchors over a feature map of any size, in the RPN's (row, column, anchor) order."""
        stride_w, stride_h = self.anchor_strides[level]
        shift_x = torch.arange(feature.shape[-1], device=feature.device).to(feature.dtype) * stride_w
        shift_y = torch.arange(feature.shape[-2], device=feature.device).to(feature.dtype) * stride_h
        grid_y, grid_x = torch.meshgrid(shift_y, shift_x, indexing='ij')
        shifts = torch.stack([grid_x, grid_y, grid_x, grid_y], dim=-1).reshape(-1, 1, 4)
        return (getattr(self, f'base_anchors{level}')[None] + shifts).reshape(-1, 4)

    def _detections(self, features: Tuple[torch.Tensor, ...], proposals: torch.Tensor,
                    bounds: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The box stages (one, or a cascade refining the boxes by each stage's top class and averaging the stages'
        class logits, as CascadeRoIHead does at test time), then the last head's boxes, multi-class NMS."""
        rois, logits = proposals, []
        for stage, (extractor, head) in enumerate(self.box_stages):
            stage_logits, deltas = head(_roi_features(extractor, features, rois))
            logits.append(stage_logits)
            if stage < len(self.box_stages) - 1:
                if not head.reg_class_agnostic:
                    columns = stage_logits[:, :-1].argmax(dim=1)[:, None] * 4 + torch.arange(4, device=rois.device)
                    deltas = deltas.gather(1, columns)
                rois = _decode(head.bbox_coder, rois, deltas, bounds)
        scores = F.softmax(sum(logits) / float(len(logits)), dim=-1)[:, :-1]
        num_rois, num_classes = scores.shape
        if head.reg_class_agnostic:
            boxes = _decode(head.bbox_coder, rois, deltas, bounds)[:, None].expand(num_rois, num_classes, 4)
        else:
            boxes = _decode(head.bbox_coder, rois[:, None].expand(num_rois, num_classes, 4).reshape(-1, 4),
                            deltas.reshape(-1, 4), bounds).reshape(num_rois, num_classes, 4)
        # mmdet offsets each class's boxes apart for one NMS over all of them, which takes mmcv minutes with a low
        # score_thr; each class as a batch of its own selects the same, and the runtimes stop at max_per_img a class
        selected = NonMaxSuppression.apply(boxes.transpose(0, 1), scores.t()[:, None], self.max_detections,
                                           self.rcnn_iou, self.score_threshold)
        labels, indices = selected[:, 0], selected[:, 2]
        scores = scores[indices, labels]
        best = scores.topk(torch.clamp(shape_as_tensor(scores)[0], max=self.max_detections)).indices
        return boxes[indices[best], labels[best]], scores[best], labels[best]

    def _mask_probabilities(self, features: Tuple[torch.Tensor, ...], boxes: torch.Tensor,
                            labels: torch.Tensor) -> torch.Tensor:
        """Each box's mask probabilities of its class (a cascade averages its stages'), (N, h, w)."""
        probabilities = torch.stack([head(_roi_features(extractor, features, boxes)).sigmoid()
                                     for extractor, head in self.mask_stages]).mean(dim=0)
        channels = torch.zeros_like(labels) if self.mask_stages[-1][1].class_agnostic else labels
        return probabilities.gather(1, channels[:, None, None, None].expand(-1, 1, *probabilities.shape[-2:]))[:, 0]


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height, width) -> torch.Tensor:
    """Masks (N, h, w) stretched over their boxes (N, 4) on a (height, width) image, zero elsewhere: (N, height,
    width), as mmdet's _do_paste_mask pastes on the CPU, but as two batched matrix products, with no loop over boxes."""
    rows = _paste_weights(boxes[:, 1], boxes[:, 3], height, masks.shape[-2])
    columns = _paste_weights(boxes[:, 0], boxes[:, 2], width, masks.shape[-1])
    return torch.matmul(torch.matmul(rows, masks), columns.transpose(1, 2))


def _decode(coder: nn.Module, boxes: torch.Tensor, deltas: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """DeltaXYWHBBoxCoder.decode (mmdet's arithmetic, in its order), clipping to ``bounds`` (W, H, W, H)."""
    deltas = deltas * deltas.new_tensor(coder.stds) + deltas.new_tensor(coder.means)
    centres = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    sizes = boxes[:, 2:] - boxes[:, :2]
    max_ratio = abs(math.log(16 / 1000))  # mmdet's default wh_ratio_clip
    centres = centres + sizes * deltas[:, :2]
    sizes = sizes * deltas[:, 2:].clamp(min=-max_ratio, max=max_ratio).exp()
    decoded = torch.cat([centres - sizes * 0.5, centres + sizes * 0.5], dim=1)
    return torch.minimum(decoded.clamp(min=0), bounds) if coder.clip_border else decoded


def _batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float,
                 max_output: int) -> torch.Tensor:
    """mmcv's batched_nms as RPNHead runs it on its levels: the indices kept by NMS within each group, best first, at
    most ``max_output``.

    Each group's boxes are moved beyond all others by the largest coordinate + 1, so one NMS keeps groups apart; the
    appended 0 keeps the maximum defined when no box is left (the boxes are clipped, so never negative)."""
    largest = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    moved = boxes + (groups.to(boxes.dtype) * (largest + 1))[:, None]
    return NonMaxSuppression.apply(moved[None], scores[None, None], max_output, iou_threshold, None)[:, 2]


def _roi_features(extractor: nn.Module, features: Tuple[torch.Tensor, ...], boxes: torch.Tensor) -> torch.Tensor:
    """SingleRoIExtractor: each box pooled from the level its size maps to (finest_scale: level 0 below 2x it,
    then one level per doubling), the levels' results put back in box order."""
    levels = torch.floor(torch.log2(torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
                                    / extractor.finest_scale + 1e-6))
    levels = levels.clamp(min=0, max=len(extractor.roi_layers) - 1).long()
    pooled, order = [], []
    for level, layer in enumerate(extractor.roi_layers):
        members = (levels == level).nonzero().squeeze(1)
        level_boxes = boxes[members]
        pooled.append(RoiAlign.apply(features[level], level_boxes, torch.zeros_like(members), layer.output_size,
                                     layer.spatial_scale, layer.sampling_ratio))
        order.append(members)
    order = torch.cat(order)
    position = torch.zeros_like(order).scatter(0, order, torch.arange(order.shape[0], device=order.device))
    return torch.cat(pooled)[position]


def _paste_weights(starts: torch.Tensor, ends: torch.Tensor, length, cells: int) -> torch.Tensor:
    """(N, length, cells) weights that, applied along rows and columns, paste each box's mask of ``cells`` cells on
    the image as mmdet's _do_paste_mask does: grid_sample's bilinear interpolation (align_corners=False, zeros
    outside) is separable, and on the CPU mmdet only pastes within a pixel of the box."""
    pixels = torch.arange(length, device=starts.device).to(starts.dtype)
    grid = (pixels[None] + 0.5 - starts[:, None]) / (ends - starts)[:, None] * 2 - 1
    grid = torch.where(torch.isinf(grid), torch.zeros_like(grid), grid)  # zero-size boxes: mmdet samples the centre
    position = ((grid + 1) * cells - 1) / 2  # grid_sample's cell coordinate of each pixel centre
    cell = torch.arange(cells, device=starts.device).to(starts.dtype)
    weights = (1 - (position[..., None] - cell).abs()).clamp(min=0)
    first = (torch.floor(starts) - 1).clamp(min=0)
    last = torch.minimum(torch.ceil(ends) + 1, pixels[-1] + 1)
    inside = (pixels[None] >= first[:, None]) & (pixels[None] < last[:, None])
    return torch.where(inside[..., None], weights, torch.zeros_like(weights))


def _nms_iou(cfg: dict, name: str) -> float:
    if cfg.get('type', 'nms') != 'nms' or cfg.get('class_agnostic', False):
        raise UnsupportedDetectorError(f'{name} = {dict(cfg)}: the export runs plain NMS only; set '
                                       f"{name}=dict(type='nms', iou_threshold=...)")
    return float(cfg['iou_threshold'])


def _max_output(max_per_img) -> int:
    return int(max_per_img) if max_per_img and max_per_img > 0 else NO_LIMIT


def _check_supported(model: nn.Module) -> None:
    """Raise :class:`UnsupportedDetectorError` naming the first part of ``model`` that the graph cannot reproduce."""
    from mmdet.models.dense_heads import RPNHead
    from mmdet.models.detectors import TwoStageDetector
    from mmdet.models.roi_heads import CascadeRoIHead, FCNMaskHead, SingleRoIExtractor, StandardRoIHead
    from mmdet.models.roi_heads.bbox_heads import BBoxHead
    from mmdet.models.task_modules import AnchorGenerator, DeltaXYWHBBoxCoder

    def fail(problem: str) -> None:
        raise UnsupportedDetectorError(f'cannot export {type(model).__name__} as a detector graph: {problem}. '
                                       f'Supported: {SUPPORTED}.')

    if not isinstance(model, TwoStageDetector) or not model.with_neck:
        fail('not a two-stage detector with a neck')
    if type(model.rpn_head) is not RPNHead or not model.rpn_head.use_sigmoid_cls:
        fail(f'the RPN head is a {type(model.rpn_head).__name__} (use_sigmoid_cls='
             f'{getattr(model.rpn_head, "use_sigmoid_cls", None)})')
    if type(model.rpn_head.prior_generator) is not AnchorGenerator:
        fail(f'the RPN anchors come from a {type(model.rpn_head.prior_generator).__name__}')
    roi_head = model.roi_head
    with_mask = getattr(roi_head, 'with_mask', False)
    if type(roi_head) not in (StandardRoIHead, CascadeRoIHead) or not with_mask:
        fail(f'the RoI head is a {type(roi_head).__name__}{"" if with_mask else " without a mask head"}')
    cascade = type(roi_head) is CascadeRoIHead
    extractors = list(roi_head.bbox_roi_extractor) + list(roi_head.mask_roi_extractor) if cascade else \
        [roi_head.bbox_roi_extractor, roi_head.mask_roi_extractor]
    for extractor in extractors:
        if type(extractor) is not SingleRoIExtractor:
            fail(f'an RoI extractor is a {type(extractor).__name__}')
        for layer in extractor.roi_layers:
            if type(layer).__name__ != 'RoIAlign' or layer.pool_mode != 'avg' or not layer.aligned:
                fail(f'an RoI layer is {layer!r} (aligned average RoIAlign expected)')
    coders = [model.rpn_head.bbox_coder]
    for head in (roi_head.bbox_head if cascade else [roi_head.bbox_head]):
        if not isinstance(head, BBoxHead) or head.custom_cls_channels or not head.with_reg:
            fail(f'a box head is a {type(head).__name__} (softmax classes and box regression expected)')
        coders.append(head.bbox_coder)
    for coder in coders:
        if type(coder) is not DeltaXYWHBBoxCoder or coder.add_ctr_clamp:
            fail(f'a box coder is a {type(coder).__name__} (DeltaXYWHBBoxCoder without add_ctr_clamp expected)')
    for head in (roi_head.mask_head if cascade else [roi_head.mask_head]):
        if type(head) is not FCNMaskHead:
            fail(f'a mask head is a {type(head).__name__}')
    if float(roi_head.test_cfg.mask_thr_binary) < 0:
        fail('test_cfg.rcnn.mask_thr_binary < 0 asks for soft masks; the graph returns binary ones (set it >= 0)')
