"""Loading a trained model and running it on image files, for the tools that show what it predicts or sees
(tools/misc/image_demo.py, tools/analysis_tools/vis_features.py), through mmdet's and mmseg's own inference APIs; and
an exported ONNX graph in place of a config's model (tools/test.py, image_demo), its errors as :class:`SetupError`."""
import copy
import warnings
from pathlib import Path
from typing import Optional

import mmcv
import numpy as np
import torch
from mmengine.model import revert_sync_batchnorm

from ..checkpoint import load_checkpoint
from ..deploy.runtime import OnnxModel
from .export import test_input_bound
from .runner_setup import SetupError


def read_rgb(path: Path) -> np.ndarray:
    image = mmcv.imread(str(path))
    if image is None:
        raise SetupError(f'cannot read image {path}: not an image format OpenCV can decode, or a damaged file')
    return mmcv.bgr2rgb(image)


def load_model(cfg, checkpoint: Optional[str], device: str) -> torch.nn.Module:
    """The model built by mmdet's or mmseg's own inference API, its weights loaded by
    :func:`convnext_dense.load_checkpoint` (any released layout; an error when they do not fit), or an ``.onnx`` graph
    of tools/deployment/export_onnx.py run by onnxruntime; SyncBN becomes BN,
    as one process needs no synchronisation. Class names come from the checkpoint, else from the config's test set;
    the palette from the config where it fits those classes, else from the checkpoint, else a fixed random one."""
    if checkpoint is not None and checkpoint.endswith('.onnx'):
        return _load_onnx_model(cfg, checkpoint)
    if cfg.default_scope == 'mmdet':
        from mmdet.apis import init_detector as init_model
    else:
        from mmseg.apis import init_model
    with warnings.catch_warnings(record=True) as caught:  # mmdet resets the filters before it warns
        model = revert_sync_batchnorm(init_model(cfg, None, device=device))
    for warning in caught:
        if not str(warning.message).startswith('checkpoint is None'):  # the classes are set below
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    found = load_checkpoint(model, checkpoint).dataset_meta if checkpoint else {}
    _set_dataset_meta(model, cfg, found)
    return model


def _load_onnx_model(cfg, path: str) -> torch.nn.Module:
    """An exported graph (tools/deployment/export_onnx.py) run by onnxruntime, behind the same ``test_step``; its
    classes come from the graph's metadata."""
    from mmengine.registry import MODELS, init_default_scope

    init_default_scope(cfg.default_scope)  # the test pipeline's transforms are mmdet's / mmseg's
    use_onnx_model(cfg, path)
    model = MODELS.build(cfg.model)
    model.cfg = cfg
    _set_dataset_meta(model, cfg, dict(classes=model.graph.classes))
    return model


def _set_dataset_meta(model, cfg, found: dict) -> None:
    configured = test_set_metainfo(cfg)
    classes = tuple(found.get('classes') or configured.get('classes') or ())
    palette = next((p for p in (configured.get('palette'), found.get('palette'))
                    if p is not None and not isinstance(p, str) and len(p) >= len(classes)), None)
    if palette is None:
        palette = [tuple(int(c) for c in color)
                   for color in np.random.RandomState(42).randint(0, 256, (len(classes), 3))]
    model.dataset_meta = dict(classes=classes, palette=[tuple(c) for c in palette[:len(classes)]])


def test_set_metainfo(cfg) -> dict:
    """The metainfo (classes, palette) of the config's test data set, without reading its annotations."""
    from mmengine.registry import DATASETS
    dataset = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset['lazy_init'] = True
    return dict(DATASETS.build(dataset).metainfo)


def predict(model, image_path: Path):
    """One image through the model's test pipeline and ``test_step``: a DetDataSample or a SegDataSample."""
    if model.cfg.default_scope == 'mmdet':
        from mmdet.apis import inference_detector
        return inference_detector(model, str(image_path))
    from mmseg.apis import inference_model
    return inference_model(model, str(image_path))


def use_onnx_model(cfg, onnx_file: str) -> str:
    """Make the config run ``onnx_file`` instead of its model (tools/test.py, tools/misc/image_demo.py); returns the
    note for the log.

    The graph must be of the config's task, predict the classes of its test set and, if its shape is fixed, take every
    image the test pipeline makes."""
    try:
        graph = OnnxModel(onnx_file)
    except (ImportError, ValueError) as error:
        raise SetupError(str(error)) from None
    expected = 'segmentation' if cfg.default_scope == 'mmseg' else 'detection'
    if graph.task != expected:
        raise SetupError(f'{onnx_file} is a {graph.task} graph and {cfg.filename} an {cfg.default_scope} config; '
                         f'evaluate a {expected} graph exported from this config')
    if graph.fixed_shape is not None:
        bound = test_input_bound(cfg)
        if bound[0] > graph.fixed_shape[0] or bound[1] > graph.fixed_shape[1]:
            raise SetupError(
                f'{onnx_file} takes images up to {graph.fixed_shape[0]}x{graph.fixed_shape[1]}, and the test pipeline '
                f'of {cfg.filename} makes them up to {bound[0]}x{bound[1]}; export a graph that serves them all: '
                f'python tools/deployment/export_onnx.py {cfg.filename} CHECKPOINT --out {onnx_file} (its default '
                'shape follows the config), or add --dynamic')
    classes = tuple(test_set_metainfo(cfg).get('classes') or ())
    if graph.classes and classes and graph.classes != classes:
        raise SetupError(f'{onnx_file} predicts the classes {graph.classes}, the test set has {classes}; export the '
                         'model trained on these classes')
    cfg.pop('data_preprocessor', None)  # the Runner would hand it to the model; the graph preprocesses itself
    cfg.model = dict(type='OnnxRuntimeModel', onnx_file=onnx_file,
                     test_cfg=dict(cfg.model.get('test_cfg') or {}) if expected == 'segmentation' else None)
    note = (f'evaluating {onnx_file} with onnxruntime ({graph.metadata["precision"]}, exported at '
            f'{graph.metadata["export_shape"]}, input {graph.metadata["input_shape"]})')
    batch_size = cfg.test_dataloader.get('batch_size', 1)
    if batch_size > 1:  # PyTorch pads a batch to its largest image; features near the borders see that padding
        note += (f'; the graph runs one image at a time, so compare with the checkpoint at test batch size 1 '
                 f'(this config batches {batch_size}): --cfg-options test_dataloader.batch_size=1')
    return note
