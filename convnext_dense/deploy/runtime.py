"""Running exported graphs: an onnxruntime session that knows its graph's metadata, and an mmengine model around it
so that tools/test.py evaluates a graph through the config's data set and metric, and tools/misc/image_demo.py draws its
predictions, exactly as they do a PyTorch checkpoint.

:class:`OnnxRuntimeModel` (registered in mmengine's MODELS) receives the test pipeline's batches, feeds each image to
the graph (which converts, normalises and pads it itself) and does the rest of mmdet's / mmseg's ``predict`` on the
graph's outputs: segmentation logits resized to the original image and their argmax, sliding-window inference when the
config asks for it (the graph runs on each window); detection boxes scaled back by the test pipeline's resize factor
(mmdet's ``rescale=True``) and the mask probabilities pasted along them on the original image.

A fixed-shape graph (exported without ``--dynamic``) serves every image up to its shape: each image (each window) is
padded at the bottom and right with the pixel that normalises to the data preprocessor's pad value, as mmdet's and
mmseg's batch padding pads, and what the graph returns is cropped back to the image (logits, label maps) or clipped to
it (boxes).
"""
import json
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from . import require


class OnnxModel:
    """An onnxruntime CPU (or ``providers``) session of an exported graph, with its metadata; ``threads``: the
    session's intra-op threads (default: onnxruntime's, one per physical core)."""

    def __init__(self, path: str, providers: Optional[List[str]] = None, threads: Optional[int] = None):
        ort = require('onnxruntime')
        self.path = path
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = providers or ['CPUExecutionProvider']
        available = ort.get_available_providers()
        if providers[0] not in available:  # onnxruntime would fall back to the CPU without a word
            raise ValueError(f'onnxruntime {ort.__version__} has no {providers[0]} (it has {", ".join(available)}); '
                             'for CUDAExecutionProvider / TensorrtExecutionProvider install onnxruntime-gpu in place '
                             'of onnxruntime')
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.providers = self.session.get_providers()
        meta = self.session.get_modelmeta().custom_metadata_map
        if 'task' not in meta:
            raise ValueError(f'{path} was not written by tools/deployment/export_onnx.py (its metadata names no task); '
                             'export the model with tools/deployment/export_onnx.py CONFIG CHECKPOINT --out FILE.onnx')
        self.metadata: Dict[str, str] = dict(meta)
        self.task: str = meta['task']
        self.classes: Tuple[str, ...] = tuple(json.loads(meta.get('classes', '[]')))
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.fixed_shape = None if meta['input_shape'] == 'dynamic' else tuple(map(int, meta['input_shape'].split()))
        if self.fixed_shape is not None and 'pad_pixel' not in meta:
            raise ValueError(f'{path} is a fixed-shape graph without the pad pixel in its metadata (an older export); '
                             'export it again with tools/deployment/export_onnx.py')
        self.pad_pixel = np.asarray(json.loads(meta.get('pad_pixel', '[0, 0, 0]')), dtype=np.float32)

    def run(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """``image``: float32 (1, 3, H, W), BGR, 0-255. Returns the graph's outputs by name; those of a fixed-shape
        graph are at its shape, of which the image fills the top-left H x W."""
        outputs = self.session.run(None, {self.input_name: self.fit(image)})
        return dict(zip(self.output_names, outputs))

    def fit(self, image: np.ndarray) -> np.ndarray:
        """The image as the graph takes it: padded at the bottom and right to a fixed-shape graph's shape."""
        image = np.ascontiguousarray(image, dtype=np.float32)
        if self.fixed_shape is None or tuple(image.shape[2:]) == self.fixed_shape:
            return image
        (height, width), (fixed_h, fixed_w) = image.shape[2:], self.fixed_shape
        if height > fixed_h or width > fixed_w:
            raise ValueError(f'{self.path} was exported for images up to {fixed_h}x{fixed_w} and got one of '
                             f'{height}x{width}; export it with --shape H W (at least {max(height, fixed_h)} '
                             f'{max(width, fixed_w)}) or --dynamic')
        padded = np.empty((1, 3, fixed_h, fixed_w), dtype=np.float32)
        padded[...] = self.pad_pixel.reshape(1, 3, 1, 1)
        padded[:, :, :height, :width] = image
        return padded


@MODELS.register_module()
class OnnxRuntimeModel(BaseModel):
    """An exported graph as an mmengine model that predicts (``test_step``): SegDataSample or DetDataSample lists,
    as the config's metric and visualiser expect.

    Args:
        onnx_file: the graph, written by tools/deployment/export_onnx.py (its metadata says the task and output layout).
        test_cfg: the segmentor's ``test_cfg``; ``mode='slide'`` runs the graph on each ``crop_size`` window.
    """

    def __init__(self, onnx_file: str, test_cfg: Optional[dict] = None):
        super().__init__()
        self.graph = OnnxModel(onnx_file)
        if self.graph.task not in ('segmentation', 'detection'):
            raise ValueError(f'{onnx_file} is a {self.graph.task} graph; tools/test.py and tools/misc/image_demo.py '
                             'run segmentation and detection graphs (export without --backbone-only)')
        self.test_cfg = dict(test_cfg or {})
        if self.test_cfg.get('mode') == 'slide' and 'labels' in self.graph.output_names:
            raise ValueError(f'{onnx_file} outputs label maps, but the config infers in sliding windows, which '
                             'averages logits; export it without --labels')

    def forward(self, inputs: List[torch.Tensor], data_samples: list, mode: str = 'predict') -> list:
        if mode != 'predict':
            raise ValueError(f'an ONNX model only predicts; got mode={mode!r}')
        predict = self._segment if self.graph.task == 'segmentation' else self._detect
        for image, sample in zip(inputs, data_samples):
            predict(image.detach().cpu().float().numpy()[None], sample)
        return data_samples

    # -------------------------------------------------------------------------------------------- segmentation
    def _segment(self, image: np.ndarray, sample) -> None:
        from mmengine.structures import PixelData
        height, width = sample.metainfo['ori_shape'][:2]
        rows, cols = image.shape[2:]
        if 'labels' in self.graph.output_names:
            labels = torch.from_numpy(self.graph.run(image)['labels'][:, :rows, :cols]).float()[None]
            labels = F.interpolate(labels, size=(height, width), mode='nearest')[0].long()
            sample.set_data(dict(pred_sem_seg=PixelData(data=labels)))
            return
        logits = (self._slide(image) if self.test_cfg.get('mode') == 'slide'
                  else self.graph.run(image)['logits'][:, :, :rows, :cols])
        logits = F.interpolate(torch.from_numpy(logits), size=(height, width), mode='bilinear',
                               align_corners=json.loads(self.graph.metadata['align_corners']))[0]
        if logits.shape[0] > 1:
            labels = logits.argmax(dim=0, keepdim=True)
        else:
            logits = logits.sigmoid()
            labels = (logits > float(self.graph.metadata['threshold'])).to(logits)
        sample.set_data(dict(seg_logits=PixelData(data=logits), pred_sem_seg=PixelData(data=labels)))

    def _slide(self, image: np.ndarray) -> np.ndarray:
        """mmseg's sliding-window inference: overlapping ``crop_size`` windows ``stride`` apart, the last one flush
        with the border, logits averaged where they overlap."""
        (stride_h, stride_w), (crop_h, crop_w) = self.test_cfg['stride'], self.test_cfg['crop_size']
        height, width = image.shape[2:]
        logits, counts = None, np.zeros((1, 1, height, width), dtype=np.float32)
        for row in range(max(height - crop_h + stride_h - 1, 0) // stride_h + 1):
            for col in range(max(width - crop_w + stride_w - 1, 0) // stride_w + 1):
                y2, x2 = min(row * stride_h + crop_h, height), min(col * stride_w + crop_w, width)
                y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
                window = self.graph.run(image[:, :, y1:y2, x1:x2])['logits'][:, :, :y2 - y1, :x2 - x1]
                if logits is None:
                    logits = np.zeros((1, window.shape[1], height, width), dtype=np.float32)
                logits[:, :, y1:y2, x1:x2] += window
                counts[:, :, y1:y2, x1:x2] += 1
        return logits / counts

    # ----------------------------------------------------------------------------------------------- detection
    def _detect(self, image: np.ndarray, sample) -> None:
        """mmdet's ``predict(rescale=True)`` on the graph's detections: boxes scaled back by the test resize, mask
        probabilities pasted along them on the original image and thresholded, as mmdet's FCNMaskHead does."""
        from mmengine.structures import InstanceData

        from .detector_graph import paste_masks
        outputs = self.graph.run(image)
        height, width = sample.metainfo['ori_shape'][:2]
        scale_w, scale_h = sample.metainfo.get('scale_factor', (1., 1.))
        boxes = torch.from_numpy(outputs['boxes']).float()
        if self.graph.fixed_shape is not None:  # clipped to the padded shape in the graph: clip to the image, as mmdet
            boxes = torch.minimum(boxes, torch.tensor([image.shape[3], image.shape[2]] * 2, dtype=boxes.dtype))
        boxes = boxes / torch.tensor([scale_w, scale_h, scale_w, scale_h])
        probabilities = torch.from_numpy(outputs['mask_probabilities']).float()
        masks = paste_masks(probabilities, boxes, height, width) >= float(self.graph.metadata['mask_threshold'])
        sample.pred_instances = InstanceData(bboxes=boxes, scores=torch.from_numpy(outputs['scores']).float(),
                                             labels=torch.from_numpy(outputs['labels']).long(), masks=masks)
