"""What tools/deployment/export_onnx.py asks of the library before and around deploy's export: the export size a
config implies, and deploy's refusals as one-line SetupErrors."""
import pytest
import torch
from conftest import DET_CONFIG, REPO

from convnext_dense.apis.export import export_model, export_shape
from convnext_dense.apis.runner_setup import SetupError, load_config

UPERNET_T = str(REPO / 'configs' / 'upernet' / 'convnext_t_160k_ade20k.py')


def test_export_shape_follows_the_config_unless_given():
    assert export_shape(load_config(UPERNET_T)) == (512, 512)  # the sliding window's crop
    assert export_shape(load_config(str(DET_CONFIG))) == (192, 192)  # the test pipeline's resize scale
    # keep-ratio resize into 1333x800: landscape images up to 800x1333, portrait ones up to 1333x800; padded to 32
    assert export_shape(load_config(str(REPO / 'configs/mask_rcnn/convnext_t_3x.py'))) == (1344, 1344)
    cfg = load_config(str(DET_CONFIG))
    cfg.test_dataloader.dataset.pipeline[1].update(scale=(200, 100), keep_ratio=False)  # exactly 100x200 (H x W)
    assert export_shape(cfg) == (128, 224)
    assert export_shape(load_config(str(DET_CONFIG)), [64, 96]) == (64, 96)


def test_export_shape_refuses_what_cannot_be_exported():
    with pytest.raises(SetupError, match='--shape 16 64: both sides must be at least 32'):
        export_shape(load_config(str(DET_CONFIG)), (16, 64))
    cfg = load_config(str(DET_CONFIG))
    cfg.test_dataloader.dataset.pipeline = [step for step in cfg.test_dataloader.dataset.pipeline
                                            if step['type'] != 'Resize']
    with pytest.raises(SetupError, match='no Resize with a scale.*give --shape H W'):
        export_shape(cfg)


def test_deploys_refusals_become_setup_errors(tmp_path):
    """deploy raises ordinary errors (here: a model it cannot export); the tools get a SetupError."""
    pytest.importorskip('onnx')
    with pytest.raises(SetupError, match='cannot export a Linear'):
        export_model(torch.nn.Linear(2, 2), str(tmp_path / 'm.onnx'), (64, 64))
