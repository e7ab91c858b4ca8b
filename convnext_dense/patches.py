"""Every process-wide change that ``import convnext_dense`` makes, in one place, each adapted to the releases present.

Each is a :class:`Patch` in :data:`PATCHES`, naming the releases whose behaviour it changes (the versions CI runs; a
test fails when another is installed, so that the patch is checked again before the pins move):

1. mmengine's own checkpoint reads (``--resume``, ``load_from``, tools/test.py, ``Pretrained`` inits of local files) go
   through :func:`convnext_dense.checkpoint.backbone.safe_load` with ``weights_only=True``. OneDL mmengine falls back to
   ``weights_only=False`` (unpickling that can run code) with only a warning when a file holds more than tensors;
   official mmengine 0.10.7 calls ``torch.load`` with torch's default, which on torch >= 2.6 refuses mmengine's own
   checkpoints (their message-hub buffers), so ``--resume`` fails there. Here both read weights-only, allowing exactly
   the non-tensor objects mmengine itself saves (:func:`mmengine_safe_globals`); anything else is refused with a
   message saying how to allow it: ``--unsafe-load`` (tools/train.py, tools/test.py) or
   ``CONVNEXT_DENSE_UNSAFE_LOAD=1``.
2. ``mmdet::``, ``mmseg::`` and ``mmpretrain::`` base configs resolve with the OneDL distributions. mmengine maps a
   scope to a distribution name (``mmseg`` -> ``mmsegmentation``) and then asks ``importlib.metadata`` for it; the
   OneDL distributions are called ``onedl-mmsegmentation`` etc., so every ``mmseg::`` reference failed with
   "mmsegmentation is not installed". A scope whose official distribution is installed keeps mmengine's mapping. A
   package installed without its ``.mim/configs`` is reported by name, with the fix.
3. The name ``LearningRateDecayOptimizerConstructor`` resolves to ours in mmdet's and mmseg's registries, which hold
   their own class of that name (:mod:`convnext_dense.engine.optimizers.layer_decay_optimizer_constructor`); ours hands
   their models back to their class, so their configs keep their param groups.

:func:`apply` makes every change; it is idempotent.
"""
import os
import os.path as osp
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import PackageNotFoundError, distribution
from typing import Callable, Dict, List, Tuple

from mmengine.config import Config
from mmengine.config import config as mmengine_config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.runner import checkpoint as mmengine_checkpoint

from .checkpoint.reading import safe_load
from .engine.optimizers.layer_decay_optimizer_constructor import LearningRateDecayOptimizerConstructor

UNSAFE_LOAD_ENV = 'CONVNEXT_DENSE_UNSAFE_LOAD'
HOW_TO_ALLOW = (f'load it with `--unsafe-load` (tools/train.py, tools/test.py) or with {UNSAFE_LOAD_ENV}=1 in the '
                'environment')
ONEDL_DISTRIBUTIONS = {
    'mmdet': 'onedl-mmdetection',
    'mmseg': 'onedl-mmsegmentation',
    'mmpretrain': 'onedl-mmpretrain',
}


HOST_PACKAGES = ('mmdet', 'mmseg')


@dataclass(frozen=True)
class Patch:
    """One process-wide change: what it does, the releases it was written for (package -> versions), and the call
    that makes it."""
    what: str
    targets: Dict[str, Tuple[str, ...]]
    make: Callable[[], None]


def apply() -> None:
    """Make every change of :data:`PATCHES`."""
    for patch in PATCHES:
        patch.make()


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


# ---------------------------------------------------------------------------------- the layer-decay constructor
def take_over_layer_decay_name() -> None:
    """In mmdet's and mmseg's registries (each optional), make ``LearningRateDecayOptimizerConstructor`` resolve to a
    subclass of ours whose ``host_constructor`` is their own class."""
    for package in HOST_PACKAGES:
        try:
            import_module(package)
        except ModuleNotFoundError as error:
            if error.name != package:  # the package is there but broken: say so
                raise
            continue
        _take_over(import_module(f'{package}.registry').OPTIM_WRAPPER_CONSTRUCTORS)


def _take_over(registry) -> None:
    """Those registries import their own class lazily, on first use, and would then refuse a name already taken; so
    ours is registered right after that import, by wrapping the registry's lazy import."""
    if getattr(registry.import_from_location, 'takes_over_layer_decay', False):
        return
    import_own_modules = registry.import_from_location
    name = LearningRateDecayOptimizerConstructor.__name__

    def import_then_take_over():
        import_own_modules()
        current = registry.module_dict.get(name)
        if current is None or not issubclass(current, LearningRateDecayOptimizerConstructor):
            standing_in = type(name, (LearningRateDecayOptimizerConstructor, ), dict(
                host_constructor=current, __module__=LearningRateDecayOptimizerConstructor.__module__,
                __doc__=LearningRateDecayOptimizerConstructor.__doc__))
            registry.register_module(name=name, module=standing_in, force=True)

    import_then_take_over.takes_over_layer_decay = True
    registry.import_from_location = import_then_take_over


MMENGINE = ('0.10.7', '0.10.12')  # official, OneDL
PATCHES = (
    Patch('mmengine reads local checkpoints weights-only, allowing what mmengine itself saves',
          dict(mmengine=MMENGINE), install_safe_loader),
    Patch('mmdet::, mmseg::, mmpretrain:: base configs resolve with the OneDL distributions',
          dict(mmengine=MMENGINE), resolve_config_scopes),
    Patch("LearningRateDecayOptimizerConstructor resolves to ours in mmdet's and mmseg's registries",
          dict(mmengine=MMENGINE, mmdet=('3.3.0', '3.5.1'), mmseg=('1.2.2', '1.4.2')), take_over_layer_decay_name),
)
