"""Make ``mmdet::``, ``mmseg::`` and ``mmpretrain::`` base configs resolve with the OneDL distributions.

mmengine resolves ``scope::path`` through ``MODULE2PACKAGE`` (``mmseg`` -> ``mmsegmentation``) and then asks
``importlib.metadata`` for a distribution of that name, falling back to a module of that name. The OneDL
distributions are called ``onedl-mmsegmentation`` etc. and no module is called ``mmsegmentation``, so every
``mmseg::`` reference fails with "mmsegmentation is not installed" although mmseg and its ``.mim/configs`` are there
(``mmdet::`` only works by accident, through the module fallback). Pointing the mapping at the distribution that is
really installed fixes the lookup for mmengine's config loader and makes its install hints name the right package.
"""
import os.path as osp
from importlib.metadata import PackageNotFoundError, distribution

from mmengine.config import Config
from mmengine.config import config as mmengine_config
from mmengine.config.utils import MODULE2PACKAGE

ONEDL_DISTRIBUTIONS = {
    'mmdet': 'onedl-mmdetection',
    'mmseg': 'onedl-mmsegmentation',
    'mmpretrain': 'onedl-mmpretrain',
}


def _is_distribution(name: str) -> bool:
    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


def resolve_onedl_packages() -> None:
    """Map the mmdet/mmseg/mmpretrain config scopes onto their OneDL distributions; safe to call repeatedly.

    A scope whose upstream distribution (``mmsegmentation``, ...) is installed keeps mmengine's mapping. Resolving
    ``scope::path`` also reports a missing ``.mim/configs`` folder by package name with the fix.
    """
    for scope, onedl_name in ONEDL_DISTRIBUTIONS.items():
        if not _is_distribution(MODULE2PACKAGE[scope]):
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
