"""Every process-wide change that ``import convnext_dense`` makes, in one place, each adapted to the mmengine present.

1. mmengine's own checkpoint reads (``--resume``, ``load_from``, tools/test.py, ``Pretrained`` inits of local files) go
   through :func:`convnext_dense.checkpoint.backbone.safe_load` with ``weights_only=True``. OneDL mmengine falls back to
   ``weights_only=False`` (unpickling that can run code) with only a warning when a file holds more than tensors;
   official mmengine 0.10.7 calls ``torch.load`` with torch's default, which on torch >= 2.6 refuses mmengine's own
   checkpoints (their message-hub buffers), so ``--resume`` fails there. Here both read weights-only, allowing exactly
   the non-tensor objects mmengine itself saves (:func:`mmengine_safe_globals`); anything else is refused with a
   message saying how to allow it: ``--unsafe-load`` (tools/train.py, tools/test.py) or ``CONVNEXT_DENSE_UNSAFE_LOAD=1``.
2. ``mmdet::``, ``mmseg::`` and ``mmpretrain::`` base configs resolve with the OneDL distributions. mmengine maps a
   scope to a distribution name (``mmseg`` -> ``mmsegmentation``) and then asks ``importlib.metadata`` for it; the
   OneDL distributions are called ``onedl-mmsegmentation`` etc., so every ``mmseg::`` reference failed with
   "mmsegmentation is not installed". A scope whose official distribution is installed keeps mmengine's mapping. A
   package installed without its ``.mim/configs`` is reported by name, with the fix.

:func:`apply` makes both changes; it is idempotent.
"""
import os
import os.path as osp
from importlib.metadata import PackageNotFoundError, distribution
from typing import Callable, List

from mmengine.config import Config
from mmengine.config import config as mmengine_config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.runner import checkpoint as mmengine_checkpoint

from .checkpoint.reading import safe_load

UNSAFE_LOAD_ENV = 'CONVNEXT_DENSE_UNSAFE_LOAD'
HOW_TO_ALLOW = (f'load it with `--unsafe-load` (tools/train.py, tools/test.py) or with {UNSAFE_LOAD_ENV}=1 in the '
                'environment')
ONEDL_DISTRIBUTIONS = {
    'mmdet': 'onedl-mmdetection',
    'mmseg': 'onedl-mmsegmentation',
    'mmpretrain': 'onedl-mmpretrain',
}


def apply() -> None:
    """Make both process-wide changes (weights-only checkpoint reads, config scopes)."""
    install_safe_loader()
    resolve_config_scopes()


# ---------------------------------------------------------------------------------- weights-only checkpoint reads
def unsafe_load_allowed() -> bool:
    return os.environ.get(UNSAFE_LOAD_ENV, '').lower() in ('1', 'true', 'yes')


def mmengine_safe_globals() -> List[Callable]:
    """The non-tensor objects in mmengine's own checkpoints: numpy arrays, dtypes and scalars, and the message hub's
    ``HistoryBuffer``; plus whatever mmengine's own allowlist adds where it has one (OneDL; official 0.10.7 has
    none)."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    numpy2 = int(np.__version__.split('.')[0]) >= 2
    np_core = np._core if numpy2 else np.core
    dtype_classes = [type(np.dtype(t)) for t in (np.bool_, np.uint8, np.int32, np.uint32, np.int64, np.float16,
                                                  np.float32, np.float64)]
    # getattr: a HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, name). The weights-only
    # unpickler calls only allowlisted functions, so what getattr returns cannot be called while loading.
    allowed = [np_core.multiarray._reconstruct, np.ndarray, np.dtype, np_core.multiarray.scalar, *dtype_classes,
               HistoryBuffer, getattr]
    # A checkpoint written under the other numpy major version names the module the other way.
    other = 'numpy.core' if numpy2 else 'numpy._core'
    aliases = [(np_core.multiarray._reconstruct, f'{other}.multiarray._reconstruct'),
               (np_core.multiarray.scalar, f'{other}.multiarray.scalar')]
    own = getattr(mmengine_checkpoint, 'get_torch_safe_globals', None)
    return allowed + aliases + [g for g in (own() if own is not None else []) if g not in allowed]


def load_from_local(filename: str, map_location=None) -> dict:
    """mmengine's local-path checkpoint loader, through ``safe_load`` (named as mmengine's, which it logs)."""
    return safe_load(osp.expanduser(filename), weights_only=not unsafe_load_allowed(), map_location=map_location,
                     safe_globals=mmengine_safe_globals(), how_to_allow=HOW_TO_ALLOW)


def install_safe_loader() -> None:
    """Make mmengine read local checkpoints with :func:`load_from_local` (its ``''`` scheme: every local path)."""
    mmengine_checkpoint.CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


# ------------------------------------------------------------------------------------------------ config scopes
def _is_distribution(name: str) -> bool:
    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


def resolve_config_scopes() -> None:
    """Map the mmdet/mmseg/mmpretrain config scopes onto their OneDL distributions where the official one is absent,
    and make a missing ``.mim/configs`` folder an error that names the package and the fix."""
    for scope, onedl_name in ONEDL_DISTRIBUTIONS.items():
        if not _is_distribution(MODULE2PACKAGE[scope]) and _is_distribution(onedl_name):
            MODULE2PACKAGE[scope] = onedl_name
    if not getattr(Config._get_cfg_path, 'reports_missing_configs', False):
        Config._get_cfg_path = staticmethod(_reporting_missing_configs(Config._get_cfg_path))


def _reporting_missing_configs(get_cfg_path):
    """Wrap ``Config._get_cfg_path`` so a package installed without its configs says so instead of naming a file."""

    def _get_cfg_path(cfg_path: str, filename: str):
        try:
            return get_cfg_path(cfg_path, filename)
        except FileNotFoundError as error:
            scope = cfg_path.partition('::')[0] if '::' in cfg_path else None
            if scope not in MODULE2PACKAGE:
                raise
            package = MODULE2PACKAGE[scope]
            configs = osp.join(mmengine_config.get_installed_path(package), '.mim', 'configs')
            if osp.isdir(configs):
                raise
            raise FileNotFoundError(
                f'{cfg_path!r} (in {filename}) needs the configs shipped with {package}, but {configs} does not '
                f'exist. Fix: reinstall it from a wheel (pip install --force-reinstall {package}); from a source '
                f'checkout, install it with pip install -e . so its configs/ are linked into .mim') from error

    _get_cfg_path.reports_missing_configs = True
    return _get_cfg_path
