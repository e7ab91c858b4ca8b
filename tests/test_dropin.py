"""The backbone drops into an unmodified mmdet config the way the README tells users to: custom_imports, a backbone
override and the neck's in_channels; the detector then trains (a loss, a backward pass and an optimizer step with our
layer-decay constructor, named as in mmdet's ConvNeXt configs)."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, DefaultScope
from mmengine.structures import InstanceData
from mmengine.utils import import_modules_from_strings

USER_CONFIG = """
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='ConvNeXt', arch='atto', out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
    neck=dict(in_channels=[40, 80, 160, 320]))
optim_wrapper = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6))
"""


def synthetic_batch(num_images=2, height=128, width=160):
    """Images with two boxes each and the masks that fill them, as mmdet's data pipeline would pack them."""
    generator = torch.Generator().manual_seed(0)
    inputs, data_samples = [], []
    for i in range(num_images):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator))
        boxes = torch.tensor([[10., 12., 60., 70.], [70. + i, 40., 140., 110.]])
        masks = np.zeros((2, height, width), dtype=np.uint8)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
            mask[y0:y1, x0:x1] = 1
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([1, 7]),
                                           masks=BitmapMasks(masks, height, width))
        data_samples.append(sample)
    return dict(inputs=inputs, data_samples=data_samples)


@pytest.fixture
def user_config(tmp_path) -> Config:
    config_file = tmp_path / 'mask-rcnn_convnext-atto_fpn_1x_coco.py'
    config_file.write_text(textwrap.dedent(USER_CONFIG))
    cfg = Config.fromfile(str(config_file))
    import_modules_from_strings(**cfg.custom_imports)
    return cfg


def test_convnext_in_unmodified_mmdet_mask_rcnn_trains_a_step(user_config):
    cfg = user_config
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(model.backbone).__module__ == 'convnext_dense.models.backbones.convnext'
    assert model.backbone.out_channels == tuple(cfg.model.neck.in_channels)

    # Our constructor's groups: the stem gets lr * 0.95 ** 7, the neck and heads the base lr.
    stem = model.backbone.downsample_layers[0][0].weight
    lr_of = {id(p): group['lr'] for group in optim_wrapper.optimizer.param_groups for p in group['params']}
    assert lr_of[id(stem)] == pytest.approx(1e-4 * 0.95**7)
    assert lr_of[id(model.neck.lateral_convs[0].conv.weight)] == pytest.approx(1e-4)

    model.train()
    data = model.data_preprocessor(synthetic_batch(), True)
    losses = model(**data, mode='loss')
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    before = {name: p.detach().clone() for name, p in model.backbone.named_parameters()}
    optim_wrapper.update_params(loss)
    changed = [name for name, p in model.backbone.named_parameters() if not torch.equal(p, before[name])]
    # Every backbone parameter gets a gradient and moves, from the stem to the last output norm.
    assert len(changed) == len(before)


def test_roi_heads_read_the_features_right(user_config):
    """mmcv's RoIAlign indexes its input as contiguous NCHW memory: features in another layout (e.g. channels-last
    strides left by permutes) are read scrambled, and a detector then trains to near-zero AP without any error."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(user_config.model).eval()
    data = model.data_preprocessor(synthetic_batch(), False)
    with torch.no_grad():
        features = model.extract_feat(data['inputs'])
        rois = torch.tensor([[0., 8., 8., 72., 64.], [1., 40., 20., 150., 120.]])
        extractor = model.roi_head.bbox_roi_extractor
        as_given = extractor(features[:extractor.num_inputs], rois)
        contiguous = extractor([f.contiguous() for f in features[:extractor.num_inputs]], rois)
    torch.testing.assert_close(as_given, contiguous)


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_the_import_registers_every_type_the_tools_write_into_configs():
    """Configs saved by tools/train.py name GuardedLoad and our hooks: `import convnext_dense` alone (none of what only
    the tools use: apis, analysis, visualization, deploy, engine.safeguards) registers them where stock mmdet and mmseg
    tools look them up."""
    result = _run_isolated("""
        import sys
        import convnext_dense
        for tools_only in ('apis', 'analysis', 'visualization', 'engine.safeguards', 'datasets.data_checks'):
            assert not any(m.startswith(f'convnext_dense.{tools_only}') for m in sys.modules), \
                f'the import pulls in convnext_dense.{tools_only}'
        for deploy_only in ('onnx', 'onnxruntime', 'convnext_dense.deploy'):
            assert deploy_only not in sys.modules, f'the import pulls in {deploy_only}'
        from mmengine.registry import DefaultScope
        for scope in ('mmdet', 'mmseg'):
            registries = __import__(f'{scope}.registry', fromlist=['TRANSFORMS', 'HOOKS'])
            with DefaultScope.overwrite_default_scope(scope):
                assert registries.TRANSFORMS.get('GuardedLoad') is convnext_dense.GuardedLoad
                for hook in ('CheckFiniteLossHook', 'ReproducibleResumeHook', 'SafeCheckpointHook', 'PreemptionHook'):
                    assert registries.HOOKS.get(hook) is getattr(convnext_dense, hook)
        print('ok')
        """)
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == 'ok', result.stderr[-3000:]


@pytest.mark.parametrize('present, absent', [('mmdet', 'mmseg'), ('mmseg', 'mmdet')])
def test_the_import_works_with_mmdet_alone_or_mmseg_alone(present, absent):
    result = _run_isolated(f"""
        import sys
        sys.modules[{absent!r}] = None  # as if it were not installed
        import torch
        from mmengine.optim import build_optim_wrapper
        from mmengine.registry import DefaultScope
        import convnext_dense
        model = torch.nn.Module()
        model.backbone = convnext_dense.ConvNeXt('atto')
        cfg = dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
                   constructor='LearningRateDecayOptimizerConstructor',
                   paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
        with DefaultScope.overwrite_default_scope({present!r}):
            optimizer = build_optim_wrapper(model, cfg).optimizer
        print(len({{round(g['lr'], 12) for g in optimizer.param_groups}}))
        """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) == 7  # layer ids 0, 1, 2, 3, 4, 6 and the output norms (7)
