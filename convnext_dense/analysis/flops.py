"""FLOPs of detectors and segmentors counted the way the ConvNeXt and Swin papers counted them.

The published figures come from mmdet 2.x / mmseg 0.x ``tools/analysis_tools/get_flops.py``: the model's
``forward_dummy`` on one image of ``--shape 1280 800`` (a (3, 1280, 800) tensor: H=1280, W=800; 800x1280 counts the
same) for COCO, and of 2048x512 (512 crops) or 2560x640 (640 crops) for ADE20K. ``forward_dummy`` is not inference:

- two-stage detectors: backbone + neck + RPN head on every level, then each box head on 1000 fixed proposals
  (``torch.randn(1000, 4)``) and each mask head on the first 100 of them; a cascade runs all its stages on those
  same RoIs (no refinement, no NMS);
- single-stage detectors: backbone + neck + dense head;
- segmentors: ``encode_decode``, backbone + decode head resized to the image (the auxiliary head is not run).

mmdet 3.x has no ``forward_dummy`` and its ``tensor`` mode runs proposals after NMS and, for a cascade, every mask
head on all of them (several times the official count), so :class:`ForwardDummy` re-creates mmdet 2.x's. It feeds
the RoI heads zero RoI features of the extractors' output shape: RoIAlign is counted by neither counter, so only the
heads' own layers matter.

Query-based models had no ``forward_dummy``; their papers (DINO, Mask2Former) counted the inference forward with
fvcore. Here that is the network up to its predictions, without post-processing: a DETR-like detector's backbone, neck,
encoder, decoder and box heads (mmdet's ``tensor`` mode); a Mask2Former's backbone, pixel decoder and transformer
decoder with its last masks upsampled to the image (mmdet ``panoptic_head.predict``), for segmentation also the
per-class logits (mmseg ``encode_decode``). Their multi-scale deformable attention's sampling is a ``grid_sample``
(uncounted, as the CUDA op was); its projections are counted.

Counting is mmengine's analyzer (fvcore's convention: one multiply-add = one FLOP; convolutions, linear layers,
matmuls, norms, upsampling and adaptive pooling counted, biases and element-wise ops such as GELU, ReLU and additions
not). mmcv 1.x's hook counter, used for the official figures, also counted conv biases and ReLU but only
``nn.Module`` layers of known types (no functional interpolate, no matmul, not the official ConvNeXt's hand-written
LayerNorm). The convolutions dominate, so on these models what one convention counts and the other does not
(LayerNorm and upsampling here, conv biases and ReLU there) is a small fraction of the total.
"""
import inspect
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from torch import nn
from torch.nn import functional as F

DUMMY_PROPOSALS = 1000  # mmdet 2.x forward_dummy: torch.randn(1000, 4)
DUMMY_MASK_ROIS = 100  # ... and rois[:100] for the mask heads
DETECTION_SHAPE = (1280, 800)  # mmdet 2.x get_flops --shape 1280 800 -> input (3, 1280, 800)
SEGMENTATION_SHAPE = (2048, 512)  # mmseg 0.x get_flops --shape 2048 512; 4 crop heights x 1 crop width
DATA_SAMPLES = dict(mmdet='mmdet.structures.DetDataSample', mmseg='mmseg.structures.SegDataSample')

# Published GFLOPs (and parameters, millions) of the ConvNeXt paper / official repo READMEs, keyed by our configs.
OFFICIAL = {
    'mask_rcnn/convnext_t_3x.py': (262, 48),
    'cascade_rcnn/convnext_t_3x.py': (741, 86),
    'cascade_rcnn/convnext_s_3x.py': (827, 108),
    'cascade_rcnn/convnext_b_3x.py': (964, 146),
    'cascade_rcnn/convnext_b_22k_3x.py': (964, 146),
    'cascade_rcnn/convnext_l_3x.py': (1354, 255),
    'cascade_rcnn/convnext_xl_3x.py': (1898, 407),
    'upernet/convnext_t_160k_ade20k.py': (939, 60),
    'upernet/convnext_s_160k_ade20k.py': (1027, 82),
    'upernet/convnext_b_160k_ade20k.py': (1170, 122),
    'upernet/convnext_b_22k_160k_ade20k.py': (1828, 122),
    'upernet/convnext_l_160k_ade20k.py': (2458, 235),
    'upernet/convnext_xl_160k_ade20k.py': (3335, 391),
    # Swin counterparts, from the Swin-Transformer-Object-Detection README (3x schedules).
    'mask_rcnn/swin_t_3x.py': (267, 48),
    'cascade_rcnn/swin_t_3x.py': (745, 86),
    'cascade_rcnn/swin_s_3x.py': (838, 107),
    'cascade_rcnn/swin_b_3x.py': (982, 145),
}


@dataclass
class FlopCount:
    """What one count found: totals, params and FLOPs per part (the backbone first; parts that are built but not
    run, such as an auxiliary head, show 0 FLOPs) and the ops nobody counted."""
    counted: str
    shape: Tuple[int, int]  # (H, W) of the traced input, after the data preprocessor's padding
    params: int
    flops: int
    parts: Dict[str, Dict[str, int]] = field(default_factory=dict)
    uncounted_ops: Dict[str, int] = field(default_factory=dict)


def official_figures(config: str) -> Optional[Dict[str, float]]:
    """The published GFLOPs / params (M) for one of our configs, matched on its folder and file name."""
    key = '/'.join(Path(config).parts[-2:])
    if key not in OFFICIAL:
        return None
    gflops, params_m = OFFICIAL[key]
    return dict(gflops=gflops, params_m=params_m)


def default_shape(cfg) -> Tuple[int, int]:
    """The (H, W) the published figures use: 1280x800 for detection; for ADE20K 4 crop heights x 1 crop width (the
    Swin / ConvNeXt UperNet figures), one crop for mask-classification heads (the Mask2Former paper's)."""
    if cfg.default_scope == 'mmseg':
        crop = cfg.model.get('data_preprocessor', {}).get('size')
        if crop and _reads_data_samples(import_module('mmseg.registry').MODELS.get(cfg.model.decode_head.type)):
            return tuple(crop)
        return (4 * crop[0], crop[1]) if crop else SEGMENTATION_SHAPE
    return DETECTION_SHAPE


def _per_stage(module, stages: int) -> list:
    """A cascade keeps one head / extractor per stage in a ModuleList; a plain RoI head has one for all."""
    return list(module) if isinstance(module, nn.ModuleList) else [module] * stages


def _roi_features(extractor: nn.Module, num_rois: int, like: torch.Tensor) -> torch.Tensor:
    return like.new_zeros(num_rois, extractor.out_channels, *extractor.roi_layers[0].output_size)


class ForwardDummy(nn.Module):
    """mmdet 2.x / mmseg 0.x ``forward_dummy`` over an mmdet 3.x / mmseg 1.x model, for the analyzer to trace.

    ``counted`` says in words what runs. Every part is called as a module, so that the analyzer's per-module
    counts add up per part.
    """

    def __init__(self, model: nn.Module, data_samples: Optional[list] = None):
        super().__init__()
        self.model = model
        self.data_samples = data_samples  # what query-based models read the image shapes from; not traced
        if hasattr(model, 'encode_decode') and not isinstance(model.decode_head, nn.ModuleList):
            if _reads_data_samples(model.decode_head):
                self.run = self._mask_classification_segmentor
                self.counted = ('backbone + decode head (pixel decoder, transformer decoder) + per-class logits of its '
                                'last layer at the image size (mmseg encode_decode), the inference forward')
            else:
                self.run = self._encode_decode
                self.counted = ('backbone + decode head on the whole image, resized to it (mmseg 0.x forward_dummy = '
                                'encode_decode, no auxiliary head), as the official count')
        elif hasattr(model, 'panoptic_head'):
            self.run = self._mask_classification_detector
            self.counted = ('backbone + panoptic head (pixel decoder, transformer decoder), its last masks upsampled '
                            'to the image (mmdet panoptic_head.predict), the inference forward before post-processing')
        elif hasattr(model, 'forward_transformer'):
            self.run = self._detection_transformer
            self.counted = ('backbone + neck + transformer encoder and decoder + box heads of every decoder layer '
                            '(mmdet tensor mode), the inference forward before post-processing')
        elif hasattr(model, 'roi_head'):
            self.run, self.counted = self._two_stage, self._describe_two_stage(model)
        elif hasattr(model, 'bbox_head'):
            self.run = self._single_stage
            self.counted = 'backbone + neck + dense head (mmdet 2.x forward_dummy), as the official count'
        else:
            raise ValueError(f'{type(model).__name__} is neither a segmentor with one decode head nor a detector with '
                             'roi_head, bbox_head or panoptic_head: its FLOPs cannot be counted')
        query_based = (self._mask_classification_segmentor, self._mask_classification_detector,
                       self._detection_transformer)
        if self.run in query_based and not data_samples:
            raise ValueError(f'{type(model).__name__} reads the image shapes from data samples: pass the data samples '
                             'of the input (build_inputs returns them)')

    def forward(self, inputs: torch.Tensor):
        return self.run(inputs)

    def _mask_classification_segmentor(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model.encode_decode(inputs, [sample.metainfo for sample in self.data_samples])

    def _mask_classification_detector(self, inputs: torch.Tensor) -> tuple:
        return self.model.panoptic_head.predict(self.model.extract_feat(inputs), self.data_samples)

    def _detection_transformer(self, inputs: torch.Tensor) -> tuple:
        return self.model._forward(inputs, self.data_samples)

    def _encode_decode(self, inputs: torch.Tensor) -> torch.Tensor:
        head = self.model.decode_head
        logits = head(self.model.extract_feat(inputs))
        return F.interpolate(logits, inputs.shape[2:], mode='bilinear', align_corners=head.align_corners)

    def _single_stage(self, inputs: torch.Tensor):
        return self.model.bbox_head(self.model.extract_feat(inputs))

    def _two_stage(self, inputs: torch.Tensor) -> list:
        model, roi_head = self.model, self.model.roi_head
        feats = model.extract_feat(inputs)
        outs = [model.rpn_head(feats)] if model.with_rpn else []
        stages = getattr(roi_head, 'num_stages', 1)
        if roi_head.with_bbox:
            for extractor, head in zip(_per_stage(roi_head.bbox_roi_extractor, stages),
                                       _per_stage(roi_head.bbox_head, stages)):
                outs.append(head(_roi_features(extractor, DUMMY_PROPOSALS, feats[0])))
        if roi_head.with_mask:
            for extractor, head in zip(_per_stage(roi_head.mask_roi_extractor, stages),
                                       _per_stage(roi_head.mask_head, stages)):
                outs.append(head(_roi_features(extractor, DUMMY_MASK_ROIS, feats[0])))
        return outs

    @staticmethod
    def _describe_two_stage(model) -> str:
        roi_head = model.roi_head
        if getattr(roi_head, 'with_shared_head', False):
            raise ValueError('RoI heads with a shared_head (C4 detectors) are not supported by the FLOPs counter')
        stages = getattr(roi_head, 'num_stages', 1)
        parts = ['backbone', 'neck'] if model.with_neck else ['backbone']
        if model.with_rpn:
            parts.append('RPN head on all levels')
        if roi_head.with_bbox:
            parts.append(f'{stages} box head(s) on {DUMMY_PROPOSALS} RoIs each')
        if roi_head.with_mask:
            parts.append(f'{stages} mask head(s) on {DUMMY_MASK_ROIS} RoIs each')
        return ' + '.join(parts) + ' (mmdet 2.x forward_dummy), as the official count'


def _reads_data_samples(head) -> bool:
    """Mask-classification heads (MaskFormer, Mask2Former; a module or its class) take the data samples in their
    forward."""
    return head is not None and 'batch_data_samples' in inspect.signature(head.forward).parameters


def count_flops(model: nn.Module, inputs: torch.Tensor, data_samples: Optional[list] = None) -> FlopCount:
    """Count one preprocessed image (1, 3, H, W) through :class:`ForwardDummy`; ``model`` should be in eval mode.
    Query-based models also need the image's data samples, as the data preprocessor returned them."""
    dummy = ForwardDummy(model, data_samples)
    with torch.no_grad():
        analyzer = FlopAnalyzer(dummy, (inputs, ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        by_module = analyzer.by_module()
    params = parameter_count(model)
    parts = {}
    for name, child in model.named_children():  # the RoI head split into its box and mask heads
        names = [f'{name}.{sub}' for sub, _ in child.named_children()] if name == 'roi_head' else [name]
        parts.update((part, dict(params=params.get(part, 0), flops=by_module.get(f'model.{part}', 0)))
                     for part in names if params.get(part) or by_module.get(f'model.{part}'))
    outside = analyzer.total() - sum(part['flops'] for part in parts.values())
    if outside:  # ops outside the model's modules: a segmentor's final resize to the image
        parts['other'] = dict(params=0, flops=outside)
    return FlopCount(counted=dummy.counted, shape=tuple(int(s) for s in inputs.shape[-2:]), params=params[''],
                     flops=analyzer.total(), parts=parts, uncounted_ops=dict(analyzer.unsupported_ops()))


def build_inputs(model: nn.Module, scope: str, height: int, width: int) -> Tuple[torch.Tensor, list]:
    """One image of the given size as the model's data preprocessor hands it over (normalised, padded), with its
    data samples (image and padded shapes)."""
    module, name = DATA_SAMPLES[scope].rsplit('.', 1)
    data_sample = getattr(import_module(module), name)(
        metainfo=dict(img_shape=(height, width), ori_shape=(height, width), scale_factor=(1., 1.)))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = model.data_preprocessor(dict(inputs=[image], data_samples=[data_sample]), False)
    return data['inputs'], data['data_samples']


def count_config(cfg: Config, shape: Optional[Sequence[int]] = None) -> FlopCount:
    """Build the config's model (random weights: they do not change the count) and count one (H, W) image, by
    default the size of the published figures."""
    if cfg.get('default_scope') not in DATA_SAMPLES:
        raise ValueError(f'default_scope is {cfg.get("default_scope")!r}: only mmdet and mmseg configs are counted')
    init_default_scope(cfg.default_scope)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    return count_flops(model, *build_inputs(model, cfg.default_scope, *(shape or default_shape(cfg))))
