"""DINO and Mask2Former with ConvNeXt (configs/dino, configs/mask2former): every config loads, is its host config but
for what its header says it changes, builds a model whose neck / pixel decoder reads the backbone's channels and
strides, runs, trains every backbone parameter, and gets the optimizer its recipe says.

Sources, as the configs' headers cite them: detrex's DINO ConvNeXt configs (github.com/IDEA-Research/detrex,
projects/dino/configs/dino-convnext/; models/dino_convnext.py: stages 1-3, drop path 0.0, layer scale 1.0; the
convnext_{size}_22k_1k_384.pth weights; its dino_r50 position embedding, temperature 10000, offset -0.5) over mmdet's
DINO-4scale R-50, whose optimizer (AdamW 1e-4, weight decay 1e-4, backbone lr x0.1, clip 0.1) detrex also uses. No
Mask2Former ConvNeXt-T/B recipe is published: the host's Swin-T recipe (mmdet / mmseg mask2former_swin-t configs:
backbone lr x0.1, no weight decay on norms and query / level embeddings, clip 0.01) with the official ConvNeXt drop
path and layer decay per size (convnext_dense/host_configs/recipes.py) as our choice. Parameter counts are those
measured with tools/analysis_tools/get_flops.py (README, "DINO and Mask2Former with ConvNeXt").
"""
import copy
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from mmengine.structures import InstanceData, PixelData
from torch import nn

import convnext_dense  # noqa: F401  registers the backbone and the constructor, resolves mmdet::/mmseg:: scopes
from convnext_dense.analysis.flops import build_inputs
from convnext_dense.models.backbones.convnext import ARCHS

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIRS = ('dino', 'mask2former')
DINO_HOST = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
COCO_HOST = 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py'
ADE_HOST = 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py'


class Recipe(NamedTuple):
    host: str
    arch: str
    checkpoint: str  # under checkpoints/, the official release name
    drop_path: float
    out_indices: Tuple[int, ...]
    layer_decay: Optional[tuple]  # (decay_rate, decay_type, num_layers); None: the host's optimizer unchanged
    params_m: float  # measured (README), two decimals


RECIPES = {
    'dino/convnext_t_22k_4scale_12e_coco.py': Recipe(DINO_HOST, 'tiny', 'convnext_tiny_22k_1k_384.pth', 0.0,
                                                     (1, 2, 3), None, 48.62),
    'dino/convnext_b_22k_4scale_12e_coco.py': Recipe(DINO_HOST, 'base', 'convnext_base_22k_1k_384.pth', 0.0,
                                                     (1, 2, 3), None, 109.08),
    'mask2former/convnext_t_lsj_50e_coco.py': Recipe(COCO_HOST, 'tiny', 'convnext_tiny_1k_224.pth', 0.4,
                                                     (0, 1, 2, 3), (0.95, 'layer_wise', 6), 47.72),
    'mask2former/convnext_b_lsj_50e_coco.py': Recipe(COCO_HOST, 'base', 'convnext_base_1k_224.pth', 0.7,
                                                     (0, 1, 2, 3), (0.95, 'layer_wise', 12), 107.59),
    'mask2former/convnext_t_160k_ade20k.py': Recipe(ADE_HOST, 'tiny', 'convnext_tiny_1k_224.pth', 0.4,
                                                    (0, 1, 2, 3), (0.9, 'stage_wise', 6), 47.74),
    'mask2former/convnext_b_160k_ade20k.py': Recipe(ADE_HOST, 'base', 'convnext_base_1k_224.pth', 0.4,
                                                    (0, 1, 2, 3), (0.9, 'stage_wise', 12), 107.61),
}
# The keys of the model that a recipe sets; the rest of the model must be the host's.
READER = {DINO_HOST: 'neck', COCO_HOST: 'panoptic_head', ADE_HOST: 'decode_head'}
EMBEDDINGS = ('query_embed', 'query_feat', 'level_embed')  # the Mask2Former hosts' decay_mult=0 keys
SLOW_B = [pytest.param(name, marks=pytest.mark.slow) if RECIPES[name].arch == 'base' else name
          for name in sorted(RECIPES)]


@lru_cache(maxsize=None)
def load(name: str) -> Config:
    return Config.fromfile(str(ROOT / 'configs' / name))


@lru_cache(maxsize=None)
def host(ref: str) -> Config:
    package, relative = ref.split('::')
    root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    return Config.fromfile(str(root / '.mim' / 'configs' / relative))


def plain(value):
    """A config value as plain dicts and lists, without the ``_scope_`` marks an ``mmdet::`` base leaves on dicts."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def build(name: str) -> nn.Module:
    """The config's model on the CPU with random weights (SyncBN as BN, as single-process runs have it).

    ``init_weights`` runs as the runner runs it: DINO's ``level_embed`` is an uninitialised ``torch.Tensor`` until
    then, whose contents (NaN at times) depend on what the allocator held before.
    """
    cfg = load(name)
    model_cfg = copy.deepcopy(cfg.model)  # DETR detectors write into their head's config
    model_cfg.backbone.init_cfg = None  # no weights here
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return revert_sync_batchnorm(model)


@lru_cache(maxsize=None)
def model_of(name: str) -> nn.Module:
    return build(name).eval()


def test_every_config_has_a_recipe_row():
    found = {str(p.relative_to(ROOT / 'configs')) for d in CONFIG_DIRS
             for p in (ROOT / 'configs' / d).glob('*.py') if not p.name.startswith('_')}
    assert found == set(RECIPES)


# ---------------------------------------------------------------------------------------------------------------------
# Recipe values, from the configs alone


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_backbone(name):
    cfg, recipe = load(name), RECIPES[name]
    assert cfg.model.backbone.to_dict() == dict(
        type='ConvNeXt', arch=recipe.arch, out_indices=recipe.out_indices, drop_path_rate=recipe.drop_path,
        layer_scale_init_value=1.0, init_cfg=dict(type='Pretrained', checkpoint=f'checkpoints/{recipe.checkpoint}'))
    dims = list(ARCHS[recipe.arch]['dims'])
    assert cfg.model[READER[recipe.host]].in_channels == [dims[i] for i in recipe.out_indices]
    assert cfg.custom_imports.imports == (['mmdet.models'] if recipe.host == ADE_HOST else []) + ['convnext_dense']
    assert not cfg.custom_imports.allow_failed_imports


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_the_rest_is_the_hosts(name):
    """Data, schedule, evaluation, heads and the optimizer's base settings are the host's."""
    cfg, recipe = load(name), RECIPES[name]
    base = host(recipe.host)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator',
                'param_scheduler', 'train_cfg', 'auto_scale_lr', 'default_scope'):
        assert plain(cfg[key]) == plain(base[key]), key
    model, host_model = plain(cfg.model), plain(base.model)
    for m in (model, host_model):
        m.pop('backbone')
        m[READER[recipe.host]].pop('in_channels')
    if recipe.host == DINO_HOST:  # detrex's position embedding
        assert model['positional_encoding'] == {**host_model['positional_encoding'], 'temperature': 10000,
                                                'offset': -0.5}
        model.pop('positional_encoding')
        host_model.pop('positional_encoding')
    assert model == host_model

    wrapper, host_wrapper = plain(cfg.optim_wrapper), plain(base.optim_wrapper)
    for key in ('type', 'optimizer', 'clip_grad'):
        assert wrapper[key] == host_wrapper[key], key
    if recipe.layer_decay is None:
        assert wrapper == host_wrapper
    else:
        decay_rate, decay_type, num_layers = recipe.layer_decay
        assert wrapper['constructor'] == 'LearningRateDecayOptimizerConstructor'
        assert wrapper['paramwise_cfg'] == {**host_wrapper['paramwise_cfg'], 'decay_rate': decay_rate,
                                            'decay_type': decay_type, 'num_layers': num_layers}


# ---------------------------------------------------------------------------------------------------------------------
# Built models


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_model_reads_the_backbone(name):
    model, recipe = model_of(name), RECIPES[name]
    backbone = model.backbone
    dims = ARCHS[recipe.arch]['dims']
    assert backbone.out_channels == tuple(dims[i] for i in recipe.out_indices)
    assert backbone.out_strides == tuple(4 * 2**i for i in recipe.out_indices)
    assert backbone.stages[-1][-1].drop_path_rate == pytest.approx(recipe.drop_path)
    params = sum(p.numel() for p in model.parameters())
    if recipe.host == DINO_HOST:
        # OneDL's mmdet 3.5 feeds DINO's ref_point_head 4 x 256 sine features of the reference box, mmdet 3.3 (as the
        # DINO paper's code) 4 x 128: 131072 fewer parameters there. The README's counts are the development stack's.
        first = model.decoder.ref_point_head.layers[0]
        params += (1024 - first.in_features) * first.out_features
    assert params == pytest.approx(recipe.params_m * 1e6, abs=0.005e6)
    if recipe.host == DINO_HOST:  # ChannelMapper: one 1x1 conv per output, a stride-2 conv on the last for level 4
        assert tuple(conv.conv.in_channels for conv in model.neck.convs) == backbone.out_channels
        assert [conv.conv.in_channels for conv in model.neck.extra_convs] == [backbone.out_channels[-1]]
    else:  # MSDeformAttnPixelDecoder: the deformable encoder on strides 32, 16, 8, a lateral conv on stride 4
        decoder = (model.panoptic_head if recipe.host == COCO_HOST else model.decode_head).pixel_decoder
        assert [conv.conv.in_channels for conv in decoder.input_convs] == list(backbone.out_channels[:0:-1])
        assert [conv.conv.in_channels for conv in decoder.lateral_convs] == [backbone.out_channels[0]]
        assert list(decoder.strides) == list(backbone.out_strides)


def _image_size(recipe):
    # DINO keeps its 900 best encoder tokens: the image must give more (256x256: 1360 over the four levels)
    return (256, 256) if recipe.host == DINO_HOST else (64, 96)


@pytest.mark.parametrize('name', SLOW_B)
def test_model_predicts(name):
    model, recipe = model_of(name), RECIPES[name]
    inputs, data_samples = build_inputs(model, load(name).default_scope, *_image_size(recipe))
    with torch.no_grad():
        (result, ) = model.predict(inputs, data_samples)
    if recipe.host == ADE_HOST:
        assert result.seg_logits.data.shape == (150, *_image_size(recipe))
        assert result.pred_sem_seg.data.shape == (1, *_image_size(recipe))
    else:
        predictions = result.pred_instances
        assert len(predictions) == (300 if recipe.host == DINO_HOST else 100)  # the hosts' max_per_img
        assert predictions.bboxes.shape[1] == 4 and torch.isfinite(predictions.bboxes).all()
        if recipe.host == COCO_HOST:
            assert predictions.masks.shape[1:] == _image_size(recipe)


def _with_targets(data_samples, recipe, size):
    """One object (a box, its mask) of class 3, or a segmentation map with classes 3 and 7."""
    height, width = size
    for sample in data_samples:
        if recipe.host == ADE_HOST:
            seg = torch.full((1, height, width), 3, dtype=torch.long)
            seg[:, :, width // 2:] = 7
            sample.gt_sem_seg = PixelData(data=seg)
        else:
            from mmdet.structures.mask import BitmapMasks
            box = torch.tensor([[8., 8., width / 2, height / 2]])
            mask = torch.zeros(1, height, width, dtype=torch.uint8)
            mask[:, 8:height // 2, 8:width // 2] = 1
            sample.gt_instances = InstanceData(bboxes=box, labels=torch.tensor([3]),
                                               masks=BitmapMasks(mask.numpy(), height, width))
    return data_samples


@pytest.mark.slow
@pytest.mark.parametrize('name', [n for n in sorted(RECIPES) if RECIPES[n].arch == 'tiny'])
def test_every_backbone_parameter_trains(name):
    """One loss step reaches every backbone parameter: no output norm is left without a gradient (DDP stops on one)."""
    recipe = RECIPES[name]
    torch.manual_seed(0)  # random weights and inputs: the same ones on every run
    model = build(name).train()
    inputs, data_samples = build_inputs(model, load(name).default_scope, *_image_size(recipe))
    losses = model.loss(inputs, _with_targets(data_samples, recipe, _image_size(recipe)))
    total = sum(value.sum() for key, value in losses.items() if 'loss' in key)
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in model.backbone.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


# ---------------------------------------------------------------------------------------------------------------------
# Optimizer


def _param_groups(name):
    model = model_of(name)
    groups = build_optim_wrapper(model, load(name).optim_wrapper.copy()).optimizer.param_groups
    by_param = {id(p): g for g in groups for p in g['params']}
    return model, {n: by_param[id(p)] for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_optimizer(name):
    recipe = RECIPES[name]
    model, groups = _param_groups(name)
    optimizer = load(name).optim_wrapper.optimizer
    lr, weight_decay = optimizer.lr, optimizer.weight_decay
    if recipe.layer_decay is None:  # detrex / mmdet's DINO: the backbone at 0.1x lr, one weight decay for all
        for param_name, group in groups.items():
            assert group['lr'] == pytest.approx(lr * (0.1 if param_name.startswith('backbone.') else 1)), param_name
            assert group['weight_decay'] == weight_decay, param_name
        return

    # Mask2Former: the layer decay under the host's backbone lr_mult 0.1; the host's decay_mult=0 keys and norms
    decay_rate, decay_type, num_layers = recipe.layer_decay
    norms = {f'{m}.{p}' for m, module in model.named_modules() if isinstance(module, (nn.LayerNorm, nn.GroupNorm))
             for p, _ in module.named_parameters(recurse=False)}
    for param_name, group in groups.items():
        param = model.get_parameter(param_name)
        if param_name.startswith('backbone.'):
            layer = model.backbone.layer_id(param_name[len('backbone.'):], decay_type, num_layers)
            expected_lr = lr * 0.1 * decay_rate**(num_layers + 1 - layer)
        else:
            expected_lr = lr
        assert group['lr'] == pytest.approx(expected_lr), param_name
        no_decay = (param_name in norms or param.ndim <= 1 or param_name.endswith('.bias')
                    or any(key in param_name for key in EMBEDDINGS))
        assert group['weight_decay'] == (0. if no_decay else weight_decay), param_name
    # the keys the host sets survive: the embeddings at the full lr without weight decay, the stem at the lowest lr
    for key in EMBEDDINGS:
        matched = [g for n, g in groups.items() if key in n]
        assert matched and all(g['lr'] == pytest.approx(lr) and g['weight_decay'] == 0. for g in matched), key
    assert min(g['lr'] for g in groups.values()) == pytest.approx(lr * 0.1 * decay_rate**(num_layers + 1))
