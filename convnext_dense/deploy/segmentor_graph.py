"""Export graphs of mmseg segmentors (image -> class logits or label map) and of backbones alone (image -> feature
maps), with the data preprocessor's work inside the graph.

The graphs take a float32 (1, 3, H, W) image in OpenCV's BGR order, 0-255, as the test pipeline hands it to the data
preprocessor, and reproduce what mmseg's ``EncoderDecoder.predict`` does up to ``postprocess_result``: BGR -> RGB and
normalisation as configured, padding as the preprocessor's ``test_cfg`` asks, whole-image inference, logits resized to
the padded size and cropped back to the input size. Sliding-window inference is the runtime's job (it runs the graph
on each window, see :mod:`.runtime`), as is resizing to the original image size.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair


class Preprocess(nn.Module):
    """The data preprocessor's test-time work: channel flip, normalisation, then bottom/right padding to a multiple of
    ``size_divisor`` with ``pad_value`` (after normalisation, as mmengine's ``stack_batch`` pads)."""

    def __init__(self, data_preprocessor: nn.Module, size_divisor: Optional[int] = None, pad_value: float = 0.):
        super().__init__()
        # mmengine's ImgDataPreprocessor and OneDL's mmseg call it _channel_conversion, mmseg 1.2 channel_conversion.
        self.bgr_to_rgb = bool(getattr(data_preprocessor, '_channel_conversion', None)
                               or getattr(data_preprocessor, 'channel_conversion', False))
        normalize = bool(data_preprocessor._enable_normalize)
        self.register_buffer('mean', data_preprocessor.mean.detach().float().reshape(1, -1, 1, 1).clone()
                             if normalize else torch.zeros(1, 3, 1, 1))
        self.register_buffer('std', data_preprocessor.std.detach().float().reshape(1, -1, 1, 1).clone()
                             if normalize else torch.ones(1, 3, 1, 1))
        self.size_divisor = size_divisor
        self.pad_value = float(pad_value)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.flip(1) if self.bgr_to_rgb else image
        x = (x - self.mean) / self.std
        if self.size_divisor is None:
            return x
        pad_h, pad_w = (-x.shape[-2]) % self.size_divisor, (-x.shape[-1]) % self.size_divisor
        return F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)


class MatmulAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two matrix products with averaging matrices built from the input's shape.

    PyTorch's ONNX exporter cannot export adaptive pooling of a tensor whose size is only known at run time (UperNet's
    pyramid pooling in a graph with dynamic input size); the bins here are PyTorch's (start ``floor(i * n / out)``,
    end ``ceil((i + 1) * n / out)``), so the result is the same at any size.
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _pair(output_size)

    @staticmethod
    def _averaging_matrix(size, out: int, dtype: torch.dtype) -> torch.Tensor:
        bins = torch.arange(out)
        start = torch.div(bins * size, out, rounding_mode='floor')
        end = torch.div((bins + 1) * size + out - 1, out, rounding_mode='floor')
        positions = torch.arange(size).unsqueeze(0)
        inside = (positions >= start.unsqueeze(1)) & (positions < end.unsqueeze(1))
        return inside.to(dtype) / (end - start).unsqueeze(1).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._averaging_matrix(x.shape[-2], self.output_size[0], x.dtype)
        cols = self._averaging_matrix(x.shape[-1], self.output_size[1], x.dtype)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def replace_adaptive_pooling(module: nn.Module) -> int:
    """Swap every ``nn.AdaptiveAvgPool2d`` inside ``module`` for :class:`MatmulAdaptiveAvgPool2d`; returns how many."""
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, nn.AdaptiveAvgPool2d):
            setattr(module, name, MatmulAdaptiveAvgPool2d(child.output_size))
            replaced += 1
        else:
            replaced += replace_adaptive_pooling(child)
    return replaced


class SegmentorGraph(nn.Module):
    """An mmseg ``EncoderDecoder`` as image -> logits (1, C, H, W), or -> label map (1, H, W) int64 with
    ``labels=True`` (argmax; for one-channel binary heads, sigmoid above the head's threshold).

    ``model`` must be a copy made for export: its adaptive pooling layers are replaced.
    """

    def __init__(self, model: nn.Module, labels: bool = False):
        super().__init__()
        pad_cfg = getattr(model.data_preprocessor, 'test_cfg', None) or {}
        if pad_cfg.get('size') is not None:
            raise ValueError(f"the data preprocessor's test_cfg pads to a fixed size {tuple(pad_cfg['size'])}, which "
                             'the export does not reproduce; pad with test_cfg=dict(size_divisor=N) instead')
        self.preprocess = Preprocess(model.data_preprocessor, pad_cfg.get('size_divisor'),
                                     model.data_preprocessor.pad_val)
        replace_adaptive_pooling(model)
        self.model = model
        self.labels = labels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(image)
        head = self.model.decode_head
        logits = head.forward(self.model.extract_feat(x))
        logits = F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=head.align_corners)
        logits = logits[:, :, :image.shape[2], :image.shape[3]]
        if not self.labels:
            return logits
        if logits.shape[1] == 1:
            return (logits.sigmoid() > head.threshold).squeeze(1).long()
        return logits.argmax(dim=1)


class BackboneGraph(nn.Module):
    """The model's backbone as image -> feature maps (one per output stage, NCHW, ``ceil(H / stride)``), the image
    normalised as the model's data preprocessor does; the backbone pads odd sizes itself."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.preprocess = Preprocess(model.data_preprocessor)
        self.backbone = model.backbone

    def forward(self, image: torch.Tensor) -> tuple:
        return tuple(self.backbone(self.preprocess(image)))
