"""What each stage of the backbone emits for one image: its output maps (after their norms: what
``model.backbone(x)`` returns for the preprocessed image) as heat maps of their first principal component.

Per map, the pixels' channel vectors are projected on their first principal component (the direction in which they
vary most; its sign chosen so that the rarer extreme is bright), over the part of the map that sees the image (not the
batch padding). The channel mean would show little: the output LayerNorms centre every pixel's channels.
"""
import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..apis.inference import predict
from ..apis.runner_setup import SetupError


@dataclass
class StageMap:
    """One backbone output: its stage (from 1), stride, C x H x W shape, and the heat map of the visible part."""
    stage: int
    stride: int
    shape: Tuple[int, int, int]
    heat: torch.Tensor  # H' x W': the first principal component over the part of the map that sees the image
    explained: float  # share of that part's variance the component explains

    def describe(self) -> str:
        channels, height, width = self.shape
        return f'stage {self.stage}: stride {self.stride}, {channels} x {height} x {width} (C x H x W)'


def backbone_init(cfg) -> Tuple[Optional[dict], str]:
    """The backbone's init_cfg (the inference APIs drop it) and a description of the weights it gives."""
    init_cfg = copy.deepcopy(cfg.model.backbone.get('init_cfg'))
    if not init_cfg or init_cfg.get('type') != 'Pretrained':
        return None, 'random weights'
    path = str(init_cfg.checkpoint)
    if '://' in path:
        raise SetupError(f'model.backbone.init_cfg loads {path}, a download; put the file under checkpoints/ and give '
                         'its path with --cfg-options model.backbone.init_cfg.checkpoint=PATH (this tool does not '
                         'download), or give --checkpoint')
    if not Path(path).is_file():
        raise SetupError(f'pretrained checkpoint not found: {path} (model.backbone.init_cfg); download it (see the '
                         'README), give a trained model with --checkpoint, or look at random weights with '
                         '--cfg-options model.backbone.init_cfg=None')
    return init_cfg, f'pretrained backbone: {Path(path).name}'


def capture_backbone(model, image_path: Path) -> tuple:
    """(backbone input, backbone outputs, the image's shape after resizing) of the first backbone call of one
    inference: configs that infer in sliding windows give the first window."""
    calls = []
    handle = model.backbone.register_forward_hook(lambda module, args, output: calls.append((args[0], output)))
    try:
        with torch.no_grad():
            result = predict(model, image_path)
    finally:
        handle.remove()
    x, outputs = calls[0]
    return x, tuple(outputs), result.metainfo['img_shape'][:2]


def stride_of(input_size: int, output_size: int) -> int:
    """The power of two ``s`` with ``ceil(input_size / s) == output_size`` (smallest if several): the backbone pads
    what a stride does not divide."""
    stride = 1
    while math.ceil(input_size / stride) > output_size:
        stride *= 2
    return stride


def first_component(feature: torch.Tensor) -> tuple:
    """(H x W map of the first principal component, share of the variance it explains) of a C x H x W map."""
    channels, height, width = feature.shape
    pixels = feature.reshape(channels, -1).T.double()
    pixels = pixels - pixels.mean(0)
    u, s, _ = torch.linalg.svd(pixels, full_matrices=False)
    component = u[:, 0] * s[0]
    if (component ** 3).sum() < 0:  # the sign of a component is arbitrary: put the long tail on the bright side
        component = -component
    explained = float(s[0] ** 2 / (s ** 2).sum()) if s.abs().sum() > 0 else 0.0
    return component.reshape(height, width).float(), explained


def stage_maps(x: torch.Tensor, outputs: Sequence[torch.Tensor], image_shape: Tuple[int, int]) -> List[StageMap]:
    """A :class:`StageMap` per backbone output of the first image of the batch ``x``; ``image_shape`` is that
    image's (height, width) after resizing, before the batch padding."""
    maps = []
    for stage, feature in enumerate(outputs, 1):
        channels, height, width = feature.shape[1:]
        stride = stride_of(x.shape[2], height)
        # The part of the map over the resized image; the rest sees only the padding of the batch.
        visible = feature[0, :, :min(height, math.ceil(image_shape[0] / stride)),
                          :min(width, math.ceil(image_shape[1] / stride))]
        heat, explained = first_component(visible.cpu())
        maps.append(StageMap(stage, stride, (channels, height, width), heat, explained))
    return maps


def plot_feature_maps(image: np.ndarray, image_name: str, input_shape: Sequence[int], maps: Sequence[StageMap],
                      title: str, out: Path) -> None:
    """A PNG at ``out``: the image (RGB; ``input_shape`` is what the backbone took, C x H x W) and a heat-map panel
    per stage, in a row, under ``title``."""
    from matplotlib.figure import Figure  # no pyplot: draws to the file without touching the display backend
    fig = Figure(figsize=(3.2 * (len(maps) + 1), 3.6))
    axes = fig.subplots(1, len(maps) + 1, squeeze=False)
    axes[0][0].imshow(image)
    axes[0][0].set_title(f'input {image_name}\n{tuple(input_shape)} to the backbone', fontsize=9)
    for ax, stage in zip(axes[0][1:], maps):
        channels, height, width = stage.shape
        ax.imshow(stage.heat.numpy(), cmap='inferno', interpolation='nearest')
        ax.set_title(f'stage {stage.stage}: stride {stage.stride}\n{channels} x {height} x {width}, '
                     f'PC1 {stage.explained:.0%} of var.', fontsize=9)
    for ax in axes[0]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))  # room for the suptitle, which tight_layout leaves out
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
