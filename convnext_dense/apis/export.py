"""ONNX export as tools/deployment/export_onnx.py runs it: the export size a config implies, and
:func:`convnext_dense.deploy.export.export` with deploy's errors (ordinary exceptions) turned into the tools'
one-line :class:`SetupError`."""
from typing import Sequence

from .runner_setup import SetupError

MIN_SIDE = 32  # the network's total stride: smaller images have no last-stage feature map


def export_shape(cfg, shape: Sequence[int] = None) -> tuple:
    """``shape`` (H, W) if given, else the largest input the config's test pipeline makes (:func:`test_input_bound`)
    padded up to the model's size divisor: the shape of a fixed-shape graph that serves every test image. At least
    :data:`MIN_SIDE` on both sides."""
    if shape is None:
        divisor = _size_divisor(cfg)
        shape = tuple(-(-side // divisor) * divisor for side in test_input_bound(cfg))
    if min(shape) < MIN_SIDE:
        raise SetupError(f'--shape {shape[0]} {shape[1]}: both sides must be at least {MIN_SIDE}')
    return tuple(shape)


def test_input_bound(cfg) -> tuple:
    """The largest (H, W) the graph is given under the config: the sliding window of a segmentor that slides, else the
    test pipeline's resize. A keep-ratio resize to (long, short) makes landscape images up to short x long and
    portrait ones up to long x short, so the bound is long x long."""
    test_cfg = cfg.model.get('test_cfg') or {}
    if cfg.default_scope == 'mmseg' and test_cfg.get('mode') == 'slide':
        return tuple(test_cfg['crop_size'])
    resize = next((t for t in cfg.test_dataloader.dataset.pipeline if t['type'].split('.')[-1] == 'Resize'), None)
    if resize is None or 'scale' not in resize:
        raise SetupError('the test pipeline has no Resize with a scale to take the export size from; give --shape H W')
    scale = resize['scale'] if isinstance(resize['scale'], (tuple, list)) else (resize['scale'], resize['scale'])
    if resize.get('keep_ratio', False):
        return max(scale), max(scale)
    return scale[1], scale[0]  # mmcv's scale is (width, height)


def _size_divisor(cfg) -> int:
    preprocessor = cfg.model.get('data_preprocessor') or {}
    test_cfg = preprocessor.get('test_cfg') or {}
    return int(preprocessor.get('pad_size_divisor') or test_cfg.get('size_divisor') or 1)


def export_model(model, out: str, shape: Sequence[int], provider: str = 'CPUExecutionProvider', **options):
    """Export ``model`` to ``out`` and check it in onnxruntime on ``provider`` (the CPU runs what it cannot):
    :func:`convnext_dense.deploy.export.export` with its options; what deploy refuses is a :class:`SetupError`."""
    from ..deploy.detector_graph import UnsupportedDetectorError
    from ..deploy.export import ParityError, export
    from ..deploy.graph_checks import GraphCheckError
    providers = list(dict.fromkeys([provider, 'CPUExecutionProvider']))
    try:
        return export(model, out, shape, providers=providers, **options)
    except (ImportError, ValueError, UnsupportedDetectorError, GraphCheckError, ParityError) as exc:
        raise SetupError(str(exc)) from None
