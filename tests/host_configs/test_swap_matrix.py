"""swap_backbone over mmdet's and mmseg's own configs: each swapped model trains one step with a gradient on every
backbone parameter (an output stage nothing reads has none), predicts one result per image, and its optimizer has
layer-wise decay with the host's own ``custom_keys`` still in effect. Hosts built for a plain ViT, and C4 hosts, stop
with a :class:`HostConfigError` that says why."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.utils import import_modules_from_strings
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

import convnext_dense  # noqa: F401  registers ConvNeXt and the layer-decay constructor
from convnext_dense.analysis.synthetic_batches import synthetic_batch
from convnext_dense.host_configs import HostConfigError, swap_backbone
from convnext_dense.host_configs.families import HOST_FAMILIES
from convnext_dense.host_configs.swap import load_host, plan_swap
from convnext_dense.utils.config_tree import walk

NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)  # what mmengine's norm_decay_mult applies to
SMALL = (128, 128)  # DETR-like hosts select their queries among the encoder's pixels: 340 of them at 128x128
HOSTS = [pytest.param(name, id=name) for name in HOST_FAMILIES]
# QueryInst leaves its boxes unclipped (clip_border=False), and mmdet's mask paste on the CPU fails on a box wholly
# outside the image, as an untrained box regression makes them: its regression starts at zero for the prediction test
# (the boxes stay its learned proposals, the whole image).
ZERO_BOX_REGRESSION = {'queryinst'}


def fit_to(cfg: Config, shape: tuple) -> None:
    """Make the batch padding of the host's data preprocessor fit the test's images: mmseg pads every batch to its
    ``size`` (the crop, 512 and more), Mask2Former to 1024x1024 (``BatchFixedSizePad``)."""
    preprocessor = cfg.model.data_preprocessor
    if preprocessor.get('size') is not None:
        preprocessor.size = shape
    for augment in preprocessor.get('batch_augments') or []:
        if augment.get('type') == 'BatchFixedSizePad':
            augment.size = shape


# Proposal, RoI and query counts for the test: what a host samples is no part of the swap, and at the hosts' own
# counts (2000 proposals, 512 RoIs a stage, DDQ's and DINO's 900 queries) those heads were most of the matrix's time
# on a CPU.
FEWER = {'nms_pre': 200, 'max_per_img': 100, 'num': 64}
QUERIES = 100


def fewer_proposals(cfg: Config) -> None:
    """Cap the RPN's proposals and the RoI samplers of ``cfg.model``'s train / test settings at :data:`FEWER`, and a
    DETR-like detector's queries at :data:`QUERIES`."""
    if cfg.model.get('num_queries', 0) > QUERIES:
        cfg.model.num_queries = QUERIES
    for part in ('train_cfg', 'test_cfg'):
        for key, node in walk(cfg.model.get(part) or {}, part):
            is_sampler = key.rsplit('.', 1)[-1] == 'sampler'
            for field, cap in FEWER.items():
                if (field == 'num') == is_sampler and isinstance(node.get(field), int) and node[field] > cap:
                    node[field] = cap


class Swapped:
    """A host config with ConvNeXt-atto swapped in, and its model (random weights, BN for SyncBN)."""

    def __init__(self, name: str):
        self.name = name
        host = HOST_FAMILIES[name][0]
        self.shape = SMALL
        self.host_cfg = load_host(host)[1]
        self.cfg = swap_backbone(host, 'atto')
        fit_to(self.cfg, self.shape)
        fewer_proposals(self.cfg)
        if self.cfg.get('custom_imports'):
            import_modules_from_strings(**self.cfg.custom_imports)
        torch.manual_seed(0)
        with self.scope():
            self.model = self.registry().build(self.cfg.model)
            self.model.init_weights()
        self.model = revert_sync_batchnorm(self.model)

    def scope(self):
        return DefaultScope.overwrite_default_scope(self.cfg.default_scope)

    def registry(self):
        if self.cfg.default_scope == 'mmdet':
            from mmdet.registry import MODELS
        else:
            from mmseg.registry import MODELS
        return MODELS

    def batch(self, with_gt: bool = True) -> dict:
        return synthetic_batch(self.cfg, 2, self.shape, np.random.default_rng(0), with_gt=with_gt)


@pytest.fixture(scope='module', autouse=True)
def first_iteration():
    """The message hub as a Runner's at its first iteration: YOLOX's batch resize reads ``iter``, TOOD's head (which
    switches assigners at an epoch) ``epoch``. What it held before is put back."""
    info = MessageHub.get_current_instance().runtime_info
    saved = {key: info.pop(key) for key in ('iter', 'epoch') if key in info}
    info.update(iter=0, epoch=0)
    yield
    for key in ('iter', 'epoch'):
        info.pop(key)
    info.update(saved)


@pytest.fixture(scope='module', params=HOSTS)
def swapped(request) -> Swapped:
    """One host's swapped model, shared by its three tests (pytest runs them one host after another)."""
    return Swapped(request.param)


@pytest.mark.slow  # the matrix builds, trains and runs ~50 models
def test_trains_every_backbone_parameter(swapped):
    if swapped.name == 'paa':
        pytest.importorskip('sklearn', reason="PAA's training assigner fits scikit-learn's GaussianMixture; "
                            'scikit-learn is not installed')
    model = swapped.model.train()
    model.zero_grad()
    with swapped.scope():
        data = model.data_preprocessor(swapped.batch(), training=True)
        losses = model(**data, mode='loss')
        loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss), log_vars
    loss.backward()
    trainable = [(name, p) for name, p in model.backbone.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [name for name, p in trainable if p.grad is None]
    assert not no_grad, f'backbone parameters without a gradient (an output nothing reads?): {no_grad}'
    not_finite = [name for name, p in trainable if not torch.isfinite(p.grad).all()]
    assert not not_finite


def expected_predictions(cfg: Config) -> set:
    """What the host's own evaluator scores: ``bbox`` / ``segm`` instances, a panoptic map or a semantic one."""
    evaluators = cfg.val_evaluator if isinstance(cfg.val_evaluator, (list, tuple)) else [cfg.val_evaluator]
    kinds = set()
    for evaluator in evaluators:
        metrics = evaluator.get('metric', 'bbox')
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        if evaluator.type == 'CocoPanopticMetric':
            kinds.add('panoptic')
        elif evaluator.type == 'CocoMetric':
            kinds.update(metrics)
        elif evaluator.type == 'IoUMetric':
            kinds.add('semantic')
        else:
            raise AssertionError(f'no check for the predictions that {evaluator.type} scores')
    return kinds


@pytest.mark.slow
def test_predicts_one_result_per_image(swapped):
    model = swapped.model.eval()
    height, width = swapped.shape
    kinds = expected_predictions(swapped.host_cfg)
    if swapped.name in ZERO_BOX_REGRESSION:
        for head in model.roi_head.bbox_head:
            torch.nn.init.zeros_(head.fc_reg.weight)
            torch.nn.init.zeros_(head.fc_reg.bias)
    with swapped.scope(), torch.no_grad():
        results = model.test_step(swapped.batch(with_gt=False))
    assert len(results) == 2
    for result in results:
        if swapped.cfg.default_scope == 'mmseg':
            from mmseg.structures import SegDataSample
            assert isinstance(result, SegDataSample)
            assert result.pred_sem_seg.data.shape == (1, height, width)
            continue
        from mmdet.structures import DetDataSample
        assert isinstance(result, DetDataSample)
        if 'panoptic' in kinds:
            assert result.pred_panoptic_seg.sem_seg.shape == (1, height, width)
        if kinds & {'bbox', 'segm'}:
            instances = result.pred_instances
            count = len(instances.scores)
            assert instances.labels.shape == (count, )
            if 'bbox' in kinds:
                assert instances.bboxes.shape == (count, 4)
            if 'segm' in kinds:
                assert tuple(instances.masks.shape) == (count, height, width)


def longest_key(name: str, custom_keys: dict):
    """The custom key that applies to a parameter: the longest one in its name (mmengine's rule)."""
    return next((key for key in sorted(sorted(custom_keys), key=len, reverse=True) if key in name), None)


@pytest.mark.slow
def test_optimizer_has_layer_decay_and_the_hosts_custom_keys(swapped):
    cfg, model = swapped.cfg, swapped.model
    host_paramwise = swapped.host_cfg.optim_wrapper.get('paramwise_cfg') or {}
    host_keys = host_paramwise.get('custom_keys', {})
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert paramwise.get('custom_keys', {}) == host_keys
    with swapped.scope():
        optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    base_lr = optimizer.defaults['lr']
    groups = {name: group for group in optimizer.param_groups for name in group['param_names']}

    backbone = [group for group in optimizer.param_groups if group['layer_id'] is not None]
    assert len({round(group['lr'], 12) for group in backbone}) >= 3, 'no layer-wise decay'
    stem = max(g['lr'] for g in backbone if g['layer_id'] == 0)
    deepest = max(g['lr'] for g in backbone if g['layer_id'] == max(g['layer_id'] for g in backbone))
    assert deepest > stem

    decay_rate, decay_type, num_layers = paramwise.decay_rate, paramwise.decay_type, paramwise.num_layers
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = longest_key(name, host_keys)
        lr = base_lr * (host_keys[key].get('lr_mult', 1.) if key else 1.)
        if name.startswith('backbone.'):
            layer = model.backbone.layer_id(name[len('backbone.'):], decay_type, num_layers)
            lr *= decay_rate**(num_layers + 1 - layer)
        assert groups[name]['lr'] == pytest.approx(lr, rel=1e-6), name
        if key and host_keys[key].get('decay_mult') == 0:
            assert groups[name]['weight_decay'] == 0, name
    if host_paramwise.get('bias_decay_mult') == 0:
        decayed = [name for name in groups if name.endswith('.bias') and groups[name]['weight_decay'] != 0]
        assert not decayed, f'bias_decay_mult=0, yet these biases have weight decay: {decayed}'
    if host_paramwise.get('norm_decay_mult') == 0:
        norms = [f'{module_name}.{name}' for module_name, module in model.named_modules() if isinstance(module, NORMS)
                 for name, p in module.named_parameters(recurse=False) if p.requires_grad]
        assert norms
        decayed = [name for name in norms if groups[name]['weight_decay'] != 0]
        assert not decayed, f'norm_decay_mult=0, yet these norm parameters have weight decay: {decayed}'


def test_the_matrix_takes_the_installed_packages_own_configs():
    scopes = [host.split('::')[0] for host, _ in HOST_FAMILIES.values()]
    assert scopes.count('mmdet') >= 32 and scopes.count('mmseg') >= 14
    for host, _ in HOST_FAMILIES.values():
        package, path = host.split('::')
        assert (Path(importlib.util.find_spec(package).origin).parent / '.mim' / 'configs' / path).is_file(), host


@pytest.mark.parametrize('host', [
    'mmseg::setr/setr_vit-l_naive_8xb2-160k_ade20k-512x512.py',
    'mmseg::setr/setr_vit-l_mla_8xb2-160k_ade20k-512x512.py',
    'mmseg::dpt/dpt_vit-b16_8xb2-160k_ade20k-512x512.py',
])
def test_vit_hosts_say_why_they_cannot_take_convnext(host):
    with pytest.raises(HostConfigError, match='VisionTransformer is a plain ViT'):
        swap_backbone(host, 'atto')
    _, cfg = load_host(host)  # with a hierarchical backbone, their neck or heads still need a ViT's outputs
    cfg.model.backbone = dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3))
    with pytest.raises(HostConfigError, match='built for a plain ViT backbone'):
        swap_backbone(cfg, 'atto')


def test_c4_hosts_name_the_field():
    with pytest.raises(HostConfigError, match=r'model\.rpn_head \(RPNHead\).*C4'):
        swap_backbone('mmdet::faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py', 'atto')


def test_rewrites_the_matrix_asked_for():
    """What the matrix found, checked on the configs alone: EncHead reads only the last of its inputs; OCRNet's soft
    regions read the OCR head's input (a dilated host has both at stride 8, ConvNeXt's stages are not); mmseg's
    Mask2Former keeps its ``custom_imports`` (one name, not a list)."""
    enc = swap_backbone(HOST_FAMILIES['encnet'][0], 'atto').model
    assert enc.backbone.out_indices == (2, 3)
    assert (enc.decode_head.in_index, enc.decode_head.in_channels) == ([1], [320])
    assert (enc.auxiliary_head.in_index, enc.auxiliary_head.in_channels) == (0, 160)

    plan = plan_swap('mmseg::ocrnet/ocrnet_r101-d8_4xb2-40k_cityscapes-512x1024.py', 'atto')
    heads = plan.delta['model']['decode_head']
    assert plan.delta['model']['backbone']['out_indices'] == (3, )
    assert [(h['type'], h['in_index'], h['in_channels']) for h in heads] == [('FCNHead', 0, 320), ('OCRHead', 0, 320)]
    assert 'OCRHead' in plan.reasons['model.decode_head.0'] and 'stride' in plan.reasons['model.decode_head.0']

    cfg = swap_backbone('mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py', 'atto')
    assert cfg.custom_imports.imports == ['mmdet.models', 'convnext_dense']
