"""Every ConvNeXt V2 config (configs/*/convnextv2_*.py) loads, carries its recipe, cites its sources and builds.

Rows mirror tests/configs/test_configs.py; what a V2 config shares with its V1 base (data, schedule, heads) is checked
by equality with that base, which test_configs.py checks against the official recipe. Sources: the ConvNeXt V2 paper
(arXiv 2301.00808: COCO Mask R-CNN and ADE20K UperNet results; its fine-tuning settings are unpublished),
mmdetection's projects/ConvNeXt-V2 port (Mask R-CNN V2-B settings and result) and the official release
(github.com/facebookresearch/ConvNeXt-V2: file names, classifier parameter counts). Values no source gives are our
choice and the configs say so; the rows pin them so a config cannot drift silently.
"""
import re
from pathlib import Path
from typing import Dict, NamedTuple, Optional

import pytest
from test_configs import _assert_layer_decay, build, load, num_params  # the V1 recipe tests' helpers

import convnext_dense  # noqa: F401  registers the backbone and the constructor, resolves mmdet::/mmseg:: scopes
from convnext_dense.models.backbones.convnext import ARCHS

ROOT = Path(__file__).resolve().parents[2]

CONFIG_DIRS = ('mask_rcnn', 'cascade_rcnn', 'upernet')
SIZES = ('atto', 'femto', 'pico', 'nano', 'tiny', 'base', 'large', 'huge')
# The official release (README of facebookresearch/ConvNeXt-V2): FCMAE pre-trained, ImageNet-1K fine-tuned, and
# ImageNet-22K fine-tuned files (nano..large at 224 and 384; huge at 384 and 512 only).
RELEASED = ({f'convnextv2_{s}_1k_224_fcmae.pt' for s in SIZES} | {f'convnextv2_{s}_1k_224_ema.pt' for s in SIZES}
            | {f'convnextv2_{s}_22k_{r}_ema.pt' for s in ('nano', 'tiny', 'base', 'large') for r in (224, 384)}
            | {f'convnextv2_huge_22k_{r}_ema.pt' for r in (384, 512)})
# Classifier parameter counts of the release, in millions, to the precision it prints them.
RELEASED_PARAMS_M = {'tiny': (28.6, 0.05), 'base': (89, 0.5), 'large': (198, 0.5), 'huge': (660, 0.5)}


class V2Recipe(NamedTuple):
    arch: str
    checkpoint: str  # file under checkpoints/
    drop_path: float
    lr: float
    decay_rate: float
    num_layers: int
    amp: bool
    crop: Optional[int] = None  # segmentation crop size
    reported: Dict[str, float] = {}  # published results quoted in the header comment


def fcmae(arch):
    return f'convnextv2_{arch}_1k_224_fcmae.pt'


DET = {
    'mask_rcnn/convnextv2_t_3x.py': V2Recipe('tiny', fcmae('tiny'), 0.4, 1e-4, 0.95, 6, True),
    'mask_rcnn/convnextv2_b_3x.py': V2Recipe('base', fcmae('base'), 0.4, 1e-4, 0.95, 12, True,
                                             reported={'box AP': 52.9, 'mask AP': 46.4}),  # mmdet's port
    'mask_rcnn/convnextv2_l_3x.py': V2Recipe('large', fcmae('large'), 0.5, 1e-4, 0.95, 12, True),
    'mask_rcnn/convnextv2_h_3x.py': V2Recipe('huge', fcmae('huge'), 0.6, 1e-4, 0.95, 12, True,
                                             reported={'mask AP': 48.9}),  # the paper
    'cascade_rcnn/convnextv2_t_3x.py': V2Recipe('tiny', fcmae('tiny'), 0.4, 2e-4, 0.7, 6, True),
    'cascade_rcnn/convnextv2_b_3x.py': V2Recipe('base', fcmae('base'), 0.7, 2e-4, 0.8, 12, True),
    'cascade_rcnn/convnextv2_l_3x.py': V2Recipe('large', fcmae('large'), 0.7, 1e-4, 0.7, 12, True),
    'cascade_rcnn/convnextv2_h_3x.py': V2Recipe('huge', fcmae('huge'), 0.8, 1e-4, 0.7, 12, True),
}
SEG = {
    'upernet/convnextv2_t_160k_ade20k.py': V2Recipe('tiny', fcmae('tiny'), 0.4, 1e-4, 0.9, 6, True, 512),
    'upernet/convnextv2_b_160k_ade20k.py': V2Recipe('base', fcmae('base'), 0.4, 1e-4, 0.9, 12, True, 512),
    'upernet/convnextv2_l_160k_ade20k.py': V2Recipe('large', fcmae('large'), 0.4, 1e-4, 0.9, 12, True, 512,
                                                    reported={'mIoU': 53.7}),  # the paper
    'upernet/convnextv2_h_160k_ade20k.py': V2Recipe('huge', fcmae('huge'), 0.4, 8e-5, 0.9, 12, True, 512,
                                                    reported={'mIoU': 55.0}),  # the paper
    'upernet/convnextv2_b_22k_160k_ade20k.py': V2Recipe('base', 'convnextv2_base_22k_224_ema.pt', 0.4, 1e-4, 0.9, 12,
                                                        True, 640),
    'upernet/convnextv2_l_22k_160k_ade20k.py': V2Recipe('large', 'convnextv2_large_22k_224_ema.pt', 0.4, 1e-4, 0.9, 12,
                                                        True, 640),
    'upernet/convnextv2_h_22k_160k_ade20k.py': V2Recipe('huge', 'convnextv2_huge_22k_384_ema.pt', 0.4, 8e-5, 0.9, 12,
                                                        True, 640),
}
ALL = {**DET, **SEG}


def test_every_v2_config_has_a_recipe_row():
    found = {str(p.relative_to(ROOT / 'configs')) for d in CONFIG_DIRS
             for p in (ROOT / 'configs' / d).glob('convnextv2_*.py')}
    assert found == set(ALL)
    for task in ('mask_rcnn/', 'cascade_rcnn/', 'upernet/'):
        assert {r.arch for n, r in ALL.items() if n.startswith(task)} == {'tiny', 'base', 'large', 'huge'}


def header(name: str) -> str:
    lines = (ROOT / 'configs' / name).read_text().splitlines()
    return ' '.join(line.lstrip('# ') for line in lines if line.startswith('#'))


@pytest.mark.parametrize('name', sorted(ALL))
def test_header_cites_sources_and_says_what_is_our_choice(name):
    text, recipe = header(name), ALL[name]
    assert 'our choice' in text.lower()
    for metric, value in recipe.reported.items():
        assert f'{metric} {value}' in text, f'{name} should quote the published {metric} {value}'
    if recipe.reported:
        assert 'arXiv 2301.00808' in text or 'projects/ConvNeXt-V2' in text


def _assert_v2_backbone(cfg, recipe):
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.version, backbone.layer_scale_init_value) == ('ConvNeXt', 2, 0.)
    assert (backbone.arch, backbone.drop_path_rate) == (recipe.arch, recipe.drop_path)
    assert recipe.checkpoint in RELEASED and f'_{recipe.arch}_' in recipe.checkpoint
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=f'checkpoints/{recipe.checkpoint}')
    assert 'convnext_dense' in cfg.custom_imports.imports and not cfg.custom_imports.allow_failed_imports


def _assert_optimizer(cfg, recipe, decay_type):
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, tuple(optimizer.betas), optimizer.weight_decay) == (
        'AdamW', recipe.lr, (0.9, 0.999), 0.05)
    wrapper = cfg.optim_wrapper
    assert wrapper.type == ('AmpOptimWrapper' if recipe.amp else 'OptimWrapper')
    assert wrapper.constructor == 'LearningRateDecayOptimizerConstructor'
    assert wrapper.paramwise_cfg == dict(decay_rate=recipe.decay_rate, decay_type=decay_type,
                                         num_layers=recipe.num_layers)


@pytest.mark.parametrize('name', sorted(DET))
def test_v2_detection_recipe(name):
    cfg, recipe = load(name), DET[name]
    _assert_v2_backbone(cfg, recipe)
    assert cfg.model.neck.in_channels == list(ARCHS[recipe.arch]['dims'])
    assert cfg.train_cfg.max_epochs == 36
    _assert_optimizer(cfg, recipe, 'layer_wise')
    # a delta over the V1 recipe: the same detector, data and schedule; only the backbone and its optimizer differ
    v1 = load(re.sub(r'convnextv2_\w+\.py$', '_base_convnext_3x.py', name))
    assert cfg.model.type == v1.model.type
    for key in ('rpn_head', 'roi_head', 'train_cfg', 'test_cfg'):
        assert cfg.model[key] == v1.model[key]
    assert cfg.train_dataloader == v1.train_dataloader and cfg.param_scheduler == v1.param_scheduler


@pytest.mark.parametrize('name', sorted(SEG))
def test_v2_segmentation_recipe(name):
    cfg, recipe = load(name), SEG[name]
    _assert_v2_backbone(cfg, recipe)
    dims = list(ARCHS[recipe.arch]['dims'])
    assert cfg.model.decode_head.in_channels == dims and cfg.model.auxiliary_head.in_channels == dims[2]
    crop = (recipe.crop, recipe.crop)
    assert tuple(cfg.crop_size) == crop and tuple(cfg.model.data_preprocessor.size) == crop
    (random_crop, ) = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomCrop']
    assert tuple(random_crop.crop_size) == crop and tuple(cfg.model.test_cfg.crop_size) == crop
    _assert_optimizer(cfg, recipe, 'stage_wise')
    assert cfg.train_cfg.max_iters == 160000
    v1 = load(f'upernet/_base_ade20k_{recipe.crop}.py')
    assert cfg.param_scheduler == v1.param_scheduler and cfg.train_cfg == v1.train_cfg
    assert cfg.train_dataloader == v1.train_dataloader
    for key in ('decode_head', 'auxiliary_head'):
        assert {k: v for k, v in cfg.model[key].items() if k != 'in_channels'} == {
            k: v for k, v in v1.model[key].items() if k != 'in_channels'}


def _released_backbone_params(arch: str) -> float:
    """The release's classifier count without its head (Linear to 1000 classes) and final norm, plus our 4 output
    norms: what our backbone should hold."""
    dims = ARCHS[arch]['dims']
    return -(dims[-1] * 1000 + 1000) - 2 * dims[-1] + 2 * sum(dims)


@pytest.mark.parametrize('name', sorted(ALL))
def test_v2_model_builds(name):
    cfg, recipe = load(name), ALL[name]
    model = build(cfg, 'cpu' if recipe.arch == 'tiny' else 'meta')
    backbone = model.backbone
    assert backbone.version == 2 and backbone.depths == ARCHS[recipe.arch]['depths']
    blocks = [block for stage in backbone.stages for block in stage]
    assert all(block.grn is not None and block.gamma is None for block in blocks)
    assert blocks[-1].drop_path_rate == pytest.approx(recipe.drop_path)
    released_m, tolerance_m = RELEASED_PARAMS_M[recipe.arch]
    assert num_params(backbone) == pytest.approx(released_m * 1e6 + _released_backbone_params(recipe.arch),
                                                 abs=tolerance_m * 1e6)
    _assert_layer_decay(cfg, model, recipe)
    if name.startswith('upernet/'):
        assert model.decode_head.in_channels == list(backbone.out_channels)
        assert model.auxiliary_head.in_channels == backbone.out_channels[2]
    else:
        assert tuple(conv.conv.in_channels for conv in model.neck.lateral_convs) == backbone.out_channels
