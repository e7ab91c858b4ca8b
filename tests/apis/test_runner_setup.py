"""Mistakes a user can fix stop tools/train.py and tools/test.py before any model is built, with a message that names
the problem and the fix: unknown config paths, missing data, missing pretrained weights or checkpoints."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from convnext_dense import CheckpointError, ConvNeXt
from convnext_dense.apis.runner_setup import (
    SetupError,
    adapt_to_machine,
    check_data,
    check_pretrained,
    load_config,
    require_checkpoint,
)

REPO = Path(__file__).resolve().parents[2]
DEMO_DET = str(REPO / 'configs' / 'demo' / 'mask_rcnn_convnext_atto_demo.py')
DEMO_SEG = str(REPO / 'configs' / 'demo' / 'upernet_convnext_atto_demo.py')


def run_tool(name, *args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / 'tools' / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def assert_clean_error(result, *fragments):
    """Exit status 1 and one ``error: ...`` line with every fragment, no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith('error: '), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_unknown_config_path_suggests_the_closest_config():
    result = run_tool('train.py', 'configs/demo/mask_rcnn_convnext_atto_dem.py')
    assert_clean_error(result, 'config file not found: configs/demo/mask_rcnn_convnext_atto_dem.py',
                       'did you mean configs/demo/mask_rcnn_convnext_atto_demo.py')


def test_missing_coco_data_names_the_path_and_the_fixes(tmp_path):
    result = run_tool('train.py', DEMO_DET, cwd=tmp_path)
    assert_clean_error(result, 'data not found: data/demo/coco/ (train_dataloader.dataset.data_root)',
                       'python tools/misc/make_demo_data.py', 'COCO 2017 under data/coco/',
                       '--cfg-options train_dataloader.dataset.data_root=PATH')


def test_missing_ade20k_data_for_testing(tmp_path):
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    result = run_tool('test.py', DEMO_SEG, str(checkpoint), cwd=tmp_path)
    assert_clean_error(result, 'data not found: data/demo/ade/ADEChallengeData2016 '
                       '(test_dataloader.dataset.data_root)', 'ADE20K under data/ade/ADEChallengeData2016/')


def test_missing_checkpoint_to_test():
    result = run_tool('test.py', DEMO_DET, 'work_dirs/nowhere/epoch_12.pth')
    assert_clean_error(result, 'checkpoint not found: work_dirs/nowhere/epoch_12.pth', 'tools/train.py')


@pytest.fixture
def demo_data(tmp_path, monkeypatch):
    """A working directory with a tiny demo data set under data/demo/."""
    subprocess.run([sys.executable, str(REPO / 'tools' / 'misc' / 'make_demo_data.py'),
                    '--num-train', '1', '--num-val', '1'],
                   cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_missing_evaluator_annotations_are_caught_too(demo_data):
    cfg = load_config(DEMO_DET, {'val_evaluator.ann_file': 'data/demo/coco/annotations/missing.json'})
    check_data(cfg, ['train_dataloader'])
    with pytest.raises(SetupError, match=r'data/demo/coco/annotations/missing.json \(val_evaluator.ann_file\)'):
        check_data(cfg, ['train_dataloader', 'val_dataloader'])


def test_missing_pretrained_backbone_suggests_training_without_it(demo_data):
    config = demo_data / 'pretrained.py'
    config.write_text(textwrap.dedent(f"""
        _base_ = [{DEMO_DET!r}]
        model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_atto.pth')))
    """))
    result = run_tool('train.py', str(config), cwd=demo_data)
    assert_clean_error(result, 'pretrained checkpoint not found: checkpoints/convnext_atto.pth '
                       '(model.backbone.init_cfg.checkpoint)', '--cfg-options model.backbone.init_cfg=None')
    # The suggested fix passes the check; so does a checkpoint that is there.
    check_pretrained(load_config(str(config), {'model.backbone.init_cfg': None}))
    (demo_data / 'checkpoints').mkdir()
    (demo_data / 'checkpoints' / 'convnext_atto.pth').write_bytes(b'')
    check_pretrained(load_config(str(config)))


def test_remote_checkpoints_are_left_to_their_loader(demo_data):
    """The up-front check looks at local files only: a URL passes it where a missing local file does not, and the
    backbone's loader then refuses the URL, naming the fix, without touching the network."""
    url = 'https://example.com/convnext_atto.pth'
    check_pretrained(load_config(DEMO_DET, {'model.backbone.pretrained': url}))
    with pytest.raises(SetupError,
                       match=r'pretrained checkpoint not found: missing\.pth \(model\.backbone\.pretrained\)'):
        check_pretrained(load_config(DEMO_DET, {'model.backbone.pretrained': 'missing.pth'}))
    with pytest.raises(CheckpointError, match='checkpoints are not downloaded.*pass the local path'):
        ConvNeXt('atto', pretrained=url).init_weights()


def test_bad_test_output_name():
    result = run_tool('test.py', DEMO_DET, 'model.pth', '--out', 'results.json')
    assert_clean_error(result, '--out must name a .pkl file, got results.json')


def test_configs_of_other_codebases_are_refused(tmp_path):
    config = tmp_path / 'classifier.py'
    config.write_text("default_scope = 'mmpretrain'\nmodel = dict(type='ImageClassifier')\n")
    with pytest.raises(SetupError, match="default_scope is 'mmpretrain'; these tools run mmdet or mmseg configs"):
        load_config(str(config))


def test_require_checkpoint():
    with pytest.raises(SetupError, match='checkpoint not found: missing.pth'):
        require_checkpoint('missing.pth')


def test_cpu_adaptations_are_reported(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    cfg = load_config(DEMO_SEG, {'optim_wrapper.type': 'AmpOptimWrapper', 'optim_wrapper.loss_scale': 'dynamic'},
                      launcher='pytorch')
    notes = adapt_to_machine(cfg)
    assert cfg.optim_wrapper.type == 'OptimWrapper' and 'loss_scale' not in cfg.optim_wrapper
    assert cfg.model.decode_head.norm_cfg.type == cfg.model.auxiliary_head.norm_cfg.type == 'BN'
    assert cfg.model_wrapper_cfg.device_ids is None
    assert notes == ['no GPU: AMP (AmpOptimWrapper) switched off, training in fp32',
                     'no GPU: distributed over gloo with DDP on CPU; SyncBN -> BN in 2 places: '
                     'model.decode_head.norm_cfg, model.auxiliary_head.norm_cfg']
    with pytest.raises(SetupError, match='--launcher slurm needs GPUs'):
        adapt_to_machine(load_config(DEMO_SEG, launcher='slurm'))
