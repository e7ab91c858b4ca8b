"""The isotropic ConvNeXt configs: each is its hierarchical twin's recipe (Mask R-CNN / UperNet ConvNeXt-T for S-iso,
ConvNeXt-B for B-iso) with only the differences its header states, builds at full size, and, shrunk to a demo-size
model, trains one step and predicts.

No dense recipe was ever published for isotropic ConvNeXt; the twin rule and the stated differences are ours.
"""
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope

import convnext_dense  # noqa: F401  registers the backbone, the neck and the optimizer constructor
from convnext_dense.analysis.synthetic_batches import synthetic_batch
from convnext_dense.models.backbones.convnext_isotropic import ARCHS

ROOT = Path(__file__).resolve().parents[2]


class IsoRecipe(NamedTuple):
    twin: str
    arch: str
    drop_path: float
    params_m: float  # measured here (no source reports one)


RECIPES = {
    'mask_rcnn/convnext_iso_s_3x.py': IsoRecipe('mask_rcnn/convnext_t_3x.py', 'small', 0.4, 42.8),
    'mask_rcnn/convnext_iso_b_3x.py': IsoRecipe('mask_rcnn/convnext_b_3x.py', 'base', 0.5, 109.4),
    'upernet/convnext_iso_s_160k_ade20k.py': IsoRecipe('upernet/convnext_t_160k_ade20k.py', 'small', 0.4, 52.5),
    'upernet/convnext_iso_b_160k_ade20k.py': IsoRecipe('upernet/convnext_b_160k_ade20k.py', 'base', 0.4, 122.6),
}
DETECTION = sorted(n for n in RECIPES if n.startswith('mask_rcnn/'))
SEGMENTATION = sorted(n for n in RECIPES if n.startswith('upernet/'))


@lru_cache(maxsize=None)
def load(name: str) -> Config:
    return Config.fromfile(str(ROOT / 'configs' / name))


def without(cfg_dict: dict, *keys: str) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in keys}


def test_every_isotropic_config_has_a_recipe_row():
    found = {str(p.relative_to(ROOT / 'configs')) for d in ('mask_rcnn', 'upernet')
             for p in (ROOT / 'configs' / d).glob('convnext_iso_*.py')}
    assert found == set(RECIPES)


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_the_twins_recipe_but_the_stated_differences(name):
    cfg, recipe = load(name), RECIPES[name]
    twin = load(recipe.twin)
    dim = ARCHS[recipe.arch]['dim']
    assert cfg.model.backbone.to_dict() == dict(
        type='ConvNeXtIsotropic', arch=recipe.arch, out_indices=(17, ), drop_path_rate=recipe.drop_path,
        init_cfg=dict(type='Pretrained', checkpoint=f'checkpoints/convnext_iso_{recipe.arch}_1k_224_ema.pth'))
    if name.startswith('mask_rcnn/'):
        assert cfg.model.neck.to_dict() == dict(type='SimpleFeaturePyramid', in_channels=dim, out_channels=256,
                                                num_outs=5)
        different = ('backbone', 'neck')
        # drop path: the twin's for S-iso (T); 0.5 for B-iso, pre-trained at 0.2 where B was at 0.5 (its header)
        assert (recipe.drop_path == twin.model.backbone.drop_path_rate) == (recipe.arch == 'small')
    else:
        assert cfg.model.neck.to_dict() == dict(type='SimpleFeaturePyramid', in_channels=dim, out_channels=None)
        assert 'neck' not in twin.model
        different = ('backbone', 'neck', 'decode_head', 'auxiliary_head')
        for head in ('decode_head', 'auxiliary_head'):
            assert without(cfg.model[head].to_dict(), 'in_channels') == without(twin.model[head].to_dict(),
                                                                                'in_channels')
        assert cfg.model.decode_head.in_channels == [dim // 4, dim // 2, dim, dim]
        assert (cfg.model.auxiliary_head.in_channels, cfg.model.auxiliary_head.in_index) == (dim, 2)
        assert recipe.drop_path == twin.model.backbone.drop_path_rate
    assert without(cfg.model.to_dict(), *different) == without(twin.model.to_dict(), *different)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg', 'param_scheduler',
                'default_hooks', 'tta_pipeline', 'tta_model', 'custom_imports'):
        assert cfg[key] == twin[key], key
    assert without(cfg.optim_wrapper.to_dict(), 'paramwise_cfg') == without(twin.optim_wrapper.to_dict(),
                                                                            'paramwise_cfg')
    # layer-wise decay over the 18 blocks, the stem at the twin's stem's lr scale
    decay, twin_decay = cfg.optim_wrapper.paramwise_cfg, twin.optim_wrapper.paramwise_cfg
    assert (decay.decay_type, decay.num_layers) == ('layer_wise', 18)
    assert decay.decay_rate**19 == pytest.approx(twin_decay.decay_rate**(twin_decay.num_layers + 1))


def build(cfg: Config, device: str = 'cpu') -> torch.nn.Module:
    model_cfg = cfg.model.copy()
    model_cfg.backbone.init_cfg = None  # no weights here
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    with torch.device(device):
        return revert_sync_batchnorm(MODELS.build(model_cfg))


def lr_scales(cfg: Config, model: torch.nn.Module) -> dict:
    wrapper_cfg = cfg.optim_wrapper.copy()
    wrapper_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs a GPU; the groups are the same
    base = wrapper_cfg.optimizer.lr
    return {name: group['lr'] / base for group in build_optim_wrapper(model, wrapper_cfg).optimizer.param_groups
            for name in group['param_names']}


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_full_size_model_builds_with_per_block_decay(name):
    cfg, recipe = load(name), RECIPES[name]
    model = build(cfg, 'meta')
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(recipe.params_m * 1e6, abs=0.05e6)
    backbone = model.backbone
    assert (backbone.depth, backbone.dim, len(backbone.blocks)) == (18, ARCHS[recipe.arch]['dim'], 18)
    assert backbone.blocks[-1].drop_path_rate == pytest.approx(recipe.drop_path)
    assert backbone.blocks[0].gamma is None  # no layer scale, as the official S-iso and B-iso
    scales = lr_scales(cfg, model)
    rate = cfg.optim_wrapper.paramwise_cfg.decay_rate
    assert scales['backbone.stem.weight'] == pytest.approx(rate**19)
    assert [scales[f'backbone.blocks.{i}.pwconv1.weight'] for i in range(18)] == pytest.approx(
        [rate**(18 - i) for i in range(18)])
    assert scales['backbone.norm17.weight'] == 1 and all(
        scale == 1 for param, scale in scales.items() if not param.startswith('backbone.'))
    if name in SEGMENTATION:
        assert model.decode_head.in_channels == list(model.neck.channels)


def demo_size(name: str) -> Config:
    """The config with a demo-size model (2 blocks of 32 channels, narrow heads, a few classes), all else as is."""
    cfg = Config.fromfile(str(ROOT / 'configs' / name))
    model = cfg.model
    model.backbone.update(arch=dict(depth=2, dim=32), out_indices=(1, ), init_cfg=None)
    model.neck.in_channels = 32
    cfg.optim_wrapper.paramwise_cfg.num_layers = 2
    if cfg.default_scope == 'mmseg':
        model.decode_head.update(in_channels=[8, 16, 32, 32], channels=16, num_classes=4)
        model.auxiliary_head.update(in_channels=32, channels=8, num_classes=4)
    else:
        width = 16
        model.neck.out_channels = width
        model.rpn_head.update(in_channels=width, feat_channels=width)
        model.roi_head.bbox_roi_extractor.out_channels = width
        model.roi_head.mask_roi_extractor.out_channels = width
        model.roi_head.bbox_head.update(in_channels=width, fc_out_channels=32, num_classes=3)
        model.roi_head.mask_head.update(in_channels=width, conv_out_channels=width, num_classes=3)
    return cfg


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_one_training_step_and_predict(name):
    cfg = demo_size(name)
    model = build(cfg)
    model.init_weights()
    wrapper_cfg = cfg.optim_wrapper.copy()
    wrapper_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs a GPU
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    backbone = model.backbone
    # parameters without weight decay: they move only if the loss reached them, through the neck down to the stem
    before = [p.detach().clone() for p in (backbone.stem.bias, backbone.norm1.bias)]
    model.train()
    losses = model.train_step(synthetic_batch(cfg, 2, (64, 96), np.random.default_rng(0)), optim_wrapper)
    assert losses and all(torch.isfinite(v) for v in losses.values())
    assert not any(torch.equal(p, b) for p, b in zip((backbone.stem.bias, backbone.norm1.bias), before))
    model.eval()
    (sample, ) = model.val_step(synthetic_batch(cfg, 1, (70, 90), np.random.default_rng(1), with_gt=False))
    if name in DETECTION:
        assert sample.pred_instances.masks.shape[1:] == (70, 90)
        assert len(sample.pred_instances.bboxes) == len(sample.pred_instances.scores) > 0
    else:
        assert sample.seg_logits.data.shape == (4, 70, 90) and sample.pred_sem_seg.data.shape == (1, 70, 90)


def test_upernet_exports_to_onnx_and_runs_at_any_size(tmp_path):
    """The isotropic UperNet through the existing export path (tools/deployment/export_onnx.py's engine): one
    LayerNormalization per norm (the blocks', the output norm, the pyramid's between its 4x deconvolutions), standard
    ops only, and onnxruntime gives mmseg's predictions at sizes other than the export size."""
    pytest.importorskip('onnx', reason='onnx (the deploy extra) is not installed')
    pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')
    from mmseg.structures import SegDataSample

    from convnext_dense.deploy.export import check_input, export
    from convnext_dense.deploy.graph_checks import count_convnext_norms
    from convnext_dense.deploy.runtime import OnnxModel
    name = 'upernet/convnext_iso_s_160k_ade20k.py'
    model = build(demo_size(name))
    model.init_weights()
    model.dataset_meta = dict(classes=('background', 'circle', 'square', 'triangle'))
    model.eval()
    assert count_convnext_norms(model) == 2 + 1 + 1
    result = export(model, str(tmp_path / 'upernet_iso.onnx'), (64, 96), dynamic=True, config=name)
    assert result.layer_norms == 4 and [check.shape for check in result.checks] == [(64, 96), (55, 123)]
    assert all(check.passed for check in result.checks)
    graph = OnnxModel(str(result.path))
    for size in [(75, 101), (33, 50)]:
        image = check_input(size, None, seed=size[0])
        sample = SegDataSample(metainfo=dict(ori_shape=size, img_shape=size))
        with torch.no_grad():
            data = model.data_preprocessor(dict(inputs=[torch.from_numpy(image[0])], data_samples=[sample]), False)
            expected = model.predict(data['inputs'], data['data_samples'])[0].seg_logits.data.numpy()
        logits = graph.run(image)['logits'][0]
        assert logits.shape == expected.shape == (4, *size)
        np.testing.assert_allclose(logits, expected, atol=1e-4 * np.abs(expected).max())


def test_trained_models_load_whole_as_tools_test_loads_them(tmp_path):
    """convnext_dense.load_checkpoint (tools/test.py, load_from): a trained isotropic detector or segmentor loads whole;
    one of another size is refused with the arch it looks like."""
    from convnext_dense import CheckpointError, load_checkpoint
    name = 'upernet/convnext_iso_s_160k_ade20k.py'
    source = build(demo_size(name))
    path = tmp_path / 'iter_1.pth'
    torch.save(dict(meta=dict(dataset_meta=dict(classes=['a', 'b', 'c', 'd'])), state_dict=source.state_dict()), path)
    model = build(demo_size(name))
    report = load_checkpoint(model, str(path))
    assert report.loaded == sorted(source.state_dict()) and report.unexpected == []
    assert report.backbone_format == 'own' and report.dataset_meta['classes'] == ['a', 'b', 'c', 'd']
    torch.testing.assert_close(model.backbone.blocks[1].pwconv1.weight, source.backbone.blocks[1].pwconv1.weight)
    wider = demo_size(name)
    wider.model.backbone.arch = dict(depth=2, dim=64)
    wider.model.neck.in_channels = 64
    wider.model.decode_head.in_channels = [16, 32, 64, 64]
    wider.model.auxiliary_head.in_channels = 64
    with pytest.raises(CheckpointError, match=r"looks like arch=\{'depth': 2, 'dim': 32\}"):
        load_checkpoint(build(wider), str(path))
