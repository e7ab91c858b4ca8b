"""tools/train.py's set-up of a run, without training: what a requeued SLURM job resumes from."""
import importlib.util
import sys

import pytest
from conftest import REPO

DEMO = str(REPO / 'configs/demo/mask_rcnn_convnext_atto_demo.py')


@pytest.fixture(scope='module')
def train_tool():
    spec = importlib.util.spec_from_file_location('train_tool', REPO / 'tools/train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def setup(train_tool, monkeypatch, demo_data, work_dir):
    monkeypatch.setattr(sys, 'argv', ['train.py', DEMO, '--work-dir', str(work_dir), '--cfg-options',
                                      f'train_dataloader.dataset.data_root={demo_data}/coco/',
                                      f'val_dataloader.dataset.data_root={demo_data}/coco/',
                                      f'val_evaluator.ann_file={demo_data}/coco/annotations/instances_val2017.json'])
    return train_tool.setup(train_tool.parse_args())


def test_a_requeued_slurm_job_resumes_once_it_has_a_checkpoint(train_tool, monkeypatch, demo_data, tmp_path):
    monkeypatch.setenv('SLURM_RESTART_COUNT', '1')
    cfg, notes = setup(train_tool, monkeypatch, demo_data, tmp_path / 'work')
    assert not cfg.get('resume') and any('no checkpoint yet: starting afresh' in note for note in notes)

    (tmp_path / 'work').mkdir()
    (tmp_path / 'work' / 'epoch_1.pth').write_bytes(b'')
    cfg, notes = setup(train_tool, monkeypatch, demo_data, tmp_path / 'work')
    assert cfg.resume is True and cfg.load_from is None and any('resuming' in note for note in notes)

    monkeypatch.setenv('SLURM_RESTART_COUNT', '0')
    cfg, _ = setup(train_tool, monkeypatch, demo_data, tmp_path / 'work')
    assert not cfg.get('resume')
