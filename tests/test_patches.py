"""The process-wide changes of convnext_dense.patches, each on the releases it targets: `mmseg::` (etc.) config scopes
resolve with whichever distribution provides the package, official or OneDL (mmengine 0.10.7 / 0.10.12); mmengine's
local checkpoint reads are weights-only and allow exactly what mmengine itself saves (OneDL 0.10.12 has an allowlist,
official 0.10.7 none); LearningRateDecayOptimizerConstructor is ours in mmdet 3.3 / 3.5 and mmseg 1.2 / 1.4."""
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import CheckpointLoader

import convnext_dense  # noqa: F401  applies the patches
from convnext_dense import CheckpointError, patches

ROOT = Path(__file__).resolve().parents[1]


def _installed(name):
    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


ONEDL = _installed('onedl-mmsegmentation')
needs_onedl = pytest.mark.skipif(not ONEDL, reason='the OneDL distributions are not installed here (official '
                                 'stack): their scope mapping has nothing to do')


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def _write_config(tmp_path, base):
    path = tmp_path / 'cfg.py'
    path.write_text(f'_base_ = {base!r}\n')
    return str(path)


@needs_onedl
def test_mmseg_scope_needs_the_fix_and_resolves_with_it(tmp_path):
    path = _write_config(tmp_path, 'mmseg::_base_/models/upernet_r50.py')
    result = _run_python(f"""
        from mmengine.config import Config
        try:
            Config.fromfile({path!r})
        except ModuleNotFoundError as error:
            print('UNRESOLVED:', error)
        from convnext_dense.patches import resolve_config_scopes
        resolve_config_scopes()
        print('RESOLVED:', Config.fromfile({path!r}).model.decode_head.type)
        """)
    assert result.returncode == 0, result.stderr
    assert 'UNRESOLVED: mmsegmentation is not installed' in result.stdout  # mmengine alone looks for mmsegmentation
    assert 'RESOLVED: UPerHead' in result.stdout


def test_importing_the_package_resolves_the_scopes(tmp_path):
    path = _write_config(tmp_path, 'mmseg::_base_/models/upernet_r50.py')
    result = _run_python(f"""
        import convnext_dense
        from mmengine.config import Config
        print(Config.fromfile({path!r}).model.decode_head.type)
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'UPerHead'


NEEDS_MMPRETRAIN = pytest.mark.skipif(not _installed('onedl-mmpretrain') and not _installed('mmpretrain'),
                                      reason='mmpretrain (a test reference) is not installed on this stack')


@pytest.mark.parametrize('base, model_type', [
    ('mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py', 'CascadeRCNN'),
    pytest.param('mmseg::_base_/models/upernet_convnext.py', 'EncoderDecoder', marks=NEEDS_MMPRETRAIN),
    pytest.param('mmpretrain::_base_/models/convnext/convnext-tiny.py', 'ImageClassifier', marks=NEEDS_MMPRETRAIN)])
def test_scopes_resolve_to_installed_configs(tmp_path, base, model_type):
    """Each scope's base config is found in the installed distribution and read whole: its own model type."""
    cfg = Config.fromfile(_write_config(tmp_path, base))
    assert cfg.model.type == model_type


def test_scopes_map_to_the_installed_distribution():
    expected = 'onedl-mmsegmentation' if ONEDL else 'mmsegmentation'
    assert MODULE2PACKAGE['mmseg'] == expected and _installed(expected)


def test_resolution_is_idempotent_and_keeps_installed_upstream_names(monkeypatch):
    patches.resolve_config_scopes()
    wrapped = Config._get_cfg_path
    monkeypatch.setitem(MODULE2PACKAGE, 'mmseg', 'torch')  # stands in for an installed upstream distribution
    patches.resolve_config_scopes()
    assert Config._get_cfg_path is wrapped
    assert MODULE2PACKAGE['mmseg'] == 'torch'


def test_missing_configs_folder_names_the_package_and_the_fix(tmp_path, monkeypatch):
    from mmengine.config import config as mmengine_config
    monkeypatch.setattr(mmengine_config, 'get_installed_path', lambda package: str(tmp_path))  # installed, no .mim
    package = MODULE2PACKAGE['mmseg']
    with pytest.raises(FileNotFoundError, match=rf'{package}.*pip install --force-reinstall {package}'):
        Config.fromfile(_write_config(tmp_path, 'mmseg::_base_/models/upernet_r50.py'))


def test_missing_config_file_keeps_mmengines_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='no_such_model.py" does not exist'):
        Config.fromfile(_write_config(tmp_path, 'mmseg::_base_/models/no_such_model.py'))


def test_mmengine_reads_local_checkpoints_through_the_weights_only_loader():
    assert CheckpointLoader._get_checkpoint_loader('/any/local.pth') is patches.load_from_local


def test_mmengine_own_objects_load_weights_only_and_others_are_refused(tmp_path, monkeypatch):
    hub = MessageHub.get_instance('test_patches')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('seed', np.int64(3))
    path = tmp_path / 'epoch_1.pth'
    torch.save(dict(message_hub=hub.state_dict(), meta=dict(shape=np.zeros((2, 3), np.float32),
                                                           dtype=np.dtype('uint8'))), path)
    monkeypatch.delenv(patches.UNSAFE_LOAD_ENV, raising=False)
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert loaded['meta']['shape'].shape == (2, 3) and loaded['message_hub']['runtime_info']['seed'] == 3

    torch.save(dict(meta=dict(callback=print)), path)
    with pytest.raises(CheckpointError, match=r'refused to load.*print.*--unsafe-load'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


@pytest.mark.parametrize('patch', patches.PATCHES, ids=lambda patch: patch.make.__name__)
def test_each_patch_targets_the_installed_releases(patch):
    """A patch reaches into the internals of the releases it names; another release needs the patch checked again
    (and its versions added here) before the pins move."""
    import importlib
    for package, versions in patch.targets.items():
        installed = importlib.import_module(package).__version__
        assert installed in versions, (f'{patch.what}: written for {package} {" / ".join(versions)}, '
                                       f'{installed} is installed; check the patch against it')


def test_patches_are_applied_once_whatever_the_calls():
    """apply() is idempotent: the wrapped registry import and the config-path wrapper are not stacked."""
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
    import_hook, get_cfg_path = OPTIM_WRAPPER_CONSTRUCTORS.import_from_location, Config._get_cfg_path
    patches.apply()
    assert OPTIM_WRAPPER_CONSTRUCTORS.import_from_location is import_hook
    assert Config._get_cfg_path is get_cfg_path


@pytest.mark.parametrize('scope', patches.HOST_PACKAGES)
def test_layer_decay_name_resolves_to_ours_standing_in_for_the_hosts(scope):
    """mmdet 3.3 / 3.5 and mmseg 1.2 / 1.4 register their own LearningRateDecayOptimizerConstructor; after the import
    the name resolves to ours in their registry, which keeps theirs as the host constructor for their models."""
    import importlib

    from convnext_dense import LearningRateDecayOptimizerConstructor
    registry = importlib.import_module(f'{scope}.registry').OPTIM_WRAPPER_CONSTRUCTORS
    resolved = registry.get('LearningRateDecayOptimizerConstructor')
    assert issubclass(resolved, LearningRateDecayOptimizerConstructor)
    assert resolved.host_constructor.__module__.startswith(f'{scope}.engine.optimizers')
