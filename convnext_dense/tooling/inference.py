"""Loading a trained model and running it on image files, for the tools that show what it predicts or sees
(tools/image_demo.py, tools/vis_features.py): through mmdet's and mmseg's own inference APIs."""
from pathlib import Path

import mmcv
import numpy as np
import torch
from mmengine.model import revert_sync_batchnorm

from .runner_setup import SetupError


def read_rgb(path: Path) -> np.ndarray:
    image = mmcv.imread(str(path))
    if image is None:
        raise SetupError(f'cannot read image {path}: not an image format OpenCV can decode, or a damaged file')
    return mmcv.bgr2rgb(image)


def load_model(cfg, checkpoint, device: str) -> torch.nn.Module:
    """The model through mmdet's or mmseg's own inference API (which also read class names and palette from the
    checkpoint's meta); SyncBN becomes BN, as one process needs no synchronisation."""
    if cfg.default_scope == 'mmdet':
        from mmdet.apis import init_detector
        return init_detector(cfg, checkpoint, device=device)
    from mmseg.apis import init_model
    return revert_sync_batchnorm(init_model(cfg, checkpoint, device=device))


def predict(model, image_path: Path):
    """One image through the model's test pipeline and ``test_step``: a DetDataSample or a SegDataSample."""
    if model.cfg.default_scope == 'mmdet':
        from mmdet.apis import inference_detector
        return inference_detector(model, str(image_path))
    from mmseg.apis import inference_model
    return inference_model(model, str(image_path))
