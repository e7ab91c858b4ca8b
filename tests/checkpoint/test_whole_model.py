"""convnext_dense.load_checkpoint: whole detectors and segmentors in the layouts ConvNeXt dense models are released in,
and the errors for checkpoints that do not fit.

Where each layout comes from:
- the official ConvNeXt releases were trained with mmdet 2.x / mmseg 0.x (facebookresearch/ConvNeXt,
  object_detection/ and semantic_segmentation/), whose checkpoints mmcv 1.x's ``save_checkpoint`` writes as
  ``{'meta': meta, 'state_dict': ..., 'optimizer': ...}`` (mmcv/runner/checkpoint.py); mmdet 2.x's
  apis/train.py puts ``mmdet_version`` and ``CLASSES`` in ``meta`` (``cfg.checkpoint_config.meta``), mmseg 0.x's
  ``mmseg_version``, ``CLASSES`` and ``PALETTE``, and tools/train.py adds ``config`` (the config's text), ``seed``,
  ``exp_name`` and ``env_info``; the runner adds ``epoch``, ``iter`` and ``time``. The backbone is the official
  detection/segmentation ConvNeXt (``downsample_layers``, ``stages``, ``norm0``..``norm3``), the heads are mmdet 2.x's
  and mmseg 0.x's, whose parameter names mmdet 3.x / mmseg 1.x kept.
- Hugging Face: transformers' own UperNetForSemanticSegmentation / ConvNextModel / ConvNextV2Model, saved with
  ``save_pretrained``.
The mmdet / mmseg model-zoo layout (mmpretrain's ConvNeXt inside) is tested end to end, from mmdet's and mmseg's own
configs, in tests/tools/test_released_models.py.
"""
import pytest
import torch
from conftest import REPO, randomize_
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

from convnext_dense import CheckpointError, ConvNeXt, load_checkpoint, load_pretrained

DEMO = REPO / 'configs' / 'demo'
DEMO_CLASSES = ('circle', 'square', 'triangle')


def build(config, **options) -> torch.nn.Module:
    """The model of a config (random weights), with its config as ``model.cfg``."""
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict({'model.backbone.init_cfg': None, **options})
    init_default_scope(cfg.default_scope)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    model.cfg = cfg
    return model


def mmdet2_release(model, save) -> str:
    """A trained detector as mmdet 2.x saved it (see the module docstring)."""
    return save({'meta': {'mmdet_version': '2.17.0+d3d3b2d', 'CLASSES': DEMO_CLASSES, 'config': 'model = dict(...)',
                          'seed': 0, 'exp_name': 'cascade_mask_rcnn_convnext_tiny.py', 'epoch': 36, 'iter': 263520,
                          'mmcv_version': '1.3.17', 'time': 'Fri Jan  7 10:11:12 2022'},
                 'state_dict': model.state_dict(), 'optimizer': {'state': {}, 'param_groups': [{'lr': 0.0}]}})


def assert_same_state(model, reference):
    for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(ours, theirs), name


@pytest.mark.parametrize('config', ['mask_rcnn_convnext_atto_demo.py', 'cascade_rcnn_convnext_atto_demo.py'])
def test_official_mmdet2_release(config, save):
    released = randomize_(build(DEMO / config))
    model = build(DEMO / config)
    report = load_checkpoint(model, mmdet2_release(released, save))
    assert_same_state(model, released)
    assert report.format == 'mmdet 2.x checkpoint (the official ConvNeXt releases)'
    assert report.dataset_meta == {'classes': DEMO_CLASSES}
    assert report.unexpected == [] and report.new_class_layers == []


def test_official_mmseg0_release(save):
    released = randomize_(build(DEMO / 'upernet_convnext_atto_demo.py'))
    palette = [[120, 120, 120], [220, 20, 60], [0, 128, 0], [0, 0, 230]]
    path = save({'meta': {'mmseg_version': '0.20.2', 'CLASSES': ('background', *DEMO_CLASSES), 'PALETTE': palette,
                          'config': '...', 'iter': 160000, 'epoch': 1},
                 'state_dict': released.state_dict()})
    model = build(DEMO / 'upernet_convnext_atto_demo.py')
    report = load_checkpoint(model, path)
    assert_same_state(model, released)
    assert report.format == 'mmseg 0.x checkpoint (the official ConvNeXt releases)'
    assert report.dataset_meta['palette'][1] == (220, 20, 60)


def test_other_number_of_classes_is_an_error_naming_every_head_unless_fine_tuning(save):
    path = mmdet2_release(build(DEMO / 'cascade_rcnn_convnext_atto_demo.py'), save)
    options = {f'model.roi_head.bbox_head.{i}.num_classes': 5 for i in range(3)}
    options['model.roi_head.mask_head.num_classes'] = 5  # one dict for the three stages, as in mmdet's config
    model = build(DEMO / 'cascade_rcnn_convnext_atto_demo.py', **options)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(model, path, model_cfg=model.cfg.model)
    message = str(error.value)
    for i in range(3):
        assert f'roi_head.bbox_head.{i}: 5 in the model, 3 in the checkpoint' in message
        assert f'model.roi_head.bbox_head.{i}.num_classes=3' in message
    assert 'model.roi_head.mask_head.num_classes=3' in message
    assert 'load_from' in message

    before = model.roi_head.bbox_head[0].fc_cls.weight.clone()
    report = load_checkpoint(model, path, new_classes=True)
    assert len(report.new_class_layers) == 3 * 4  # fc_cls, conv_logits (weight, bias) per stage; class-agnostic fc_reg
    assert torch.equal(model.roi_head.bbox_head[0].fc_cls.weight, before)


def test_backbone_only_file_is_an_error_saying_use_it_as_pretraining(save):
    backbone = ConvNeXt('atto')
    with pytest.raises(CheckpointError, match=r'backbone checkpoint .* model\.backbone\.init_cfg\.checkpoint='):
        load_checkpoint(build(DEMO / 'mask_rcnn_convnext_atto_demo.py'), save({'model': backbone.state_dict()}))


def test_another_size_is_an_error_naming_the_arch(save):
    femto = build(DEMO / 'mask_rcnn_convnext_atto_demo.py', **{'model.backbone.arch': 'femto',
                                                              'model.neck.in_channels': [48, 96, 192, 384]})
    with pytest.raises(CheckpointError, match=r"do not fit .* arch='femto'"):
        load_checkpoint(build(DEMO / 'mask_rcnn_convnext_atto_demo.py'), mmdet2_release(femto, save))


def test_another_model_is_an_error_naming_what_is_missing(save):
    mask_rcnn = mmdet2_release(build(DEMO / 'mask_rcnn_convnext_atto_demo.py'), save)
    with pytest.raises(CheckpointError, match=r'no weights for .*roi_head\.bbox_head\.1'):
        load_checkpoint(build(DEMO / 'cascade_rcnn_convnext_atto_demo.py'), mask_rcnn)


# ------------------------------------------------------------------------------------------------- Hugging Face
def import_transformers():
    return pytest.importorskip('transformers', reason='transformers (a test reference for the Hugging Face layouts) '
                               'is not installed on this stack')


def hf_randomize_(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights and BatchNorm statistics, so that the comparison exercises every mapped tensor."""
    randomize_(model)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model


@pytest.mark.parametrize('safe_serialization', [True, False], ids=['model.safetensors', 'pytorch_model.bin'])
def test_huggingface_upernet_gives_transformers_logits_in_our_config(tmp_path, safe_serialization):
    """openmmlab/upernet-convnext-tiny's architecture (transformers' UperNetConfig defaults with a ConvNeXt-T
    backbone) in configs/upernet/convnext_t_160k_ade20k.py."""
    transformers = import_transformers()
    backbone = transformers.ConvNextConfig(depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768],
                                           out_features=['stage1', 'stage2', 'stage3', 'stage4'])
    config = transformers.UperNetConfig(backbone_config=backbone, hidden_size=512, auxiliary_in_channels=384,
                                        auxiliary_channels=256, num_labels=150,
                                        id2label={i: f'class{i}' for i in range(150)})
    torch.manual_seed(0)
    reference = hf_randomize_(transformers.UperNetForSemanticSegmentation(config)).eval()
    reference.save_pretrained(tmp_path / 'hf', safe_serialization=safe_serialization)

    model = build(REPO / 'configs/upernet/convnext_t_160k_ade20k.py')
    report = load_checkpoint(model, str(tmp_path / 'hf'))
    assert report.format == 'Hugging Face UperNetForSemanticSegmentation'
    assert report.unexpected == [] and report.missing_unused_at_test == []
    assert report.dataset_meta['classes'][:2] == ('class0', 'class1')

    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = reference(pixel_values=x).logits
        ours = model.encode_decode(x, [dict(img_shape=(96, 128))])
    assert (ours - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize('version', [1, 2])
def test_huggingface_classification_weights_as_backbone_pretraining(tmp_path, version):
    """facebook/convnext-*-224 (ConvNextModel) and facebook/convnextv2-*-1k-224 (ConvNextV2Model) layouts."""
    transformers = import_transformers()
    kwargs = dict(depths=[2, 2, 6, 2], hidden_sizes=[40, 80, 160, 320], num_labels=10)
    if version == 1:
        config, model_class = transformers.ConvNextConfig(**kwargs), transformers.ConvNextForImageClassification
    else:
        config, model_class = transformers.ConvNextV2Config(**kwargs), transformers.ConvNextV2ForImageClassification
    torch.manual_seed(0)
    reference = randomize_(model_class(config)).eval()
    reference.save_pretrained(tmp_path / 'hf')

    backbone = ConvNeXt('atto', version=version).eval()
    report = load_pretrained(backbone, str(tmp_path / 'hf' / 'model.safetensors'))
    assert report.format == 'huggingface' and report.missing == [] and report.unexpected == []
    assert len(report.unused_classifier_norm) == 2 and report.ignored_non_backbone == ['classifier.bias',
                                                                                       'classifier.weight']
    stage_outputs = []
    for stage in backbone.stages:
        stage.register_forward_hook(lambda module, args, output: stage_outputs.append(output))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        hidden_states = reference(pixel_values=x, output_hidden_states=True).hidden_states[1:]
        backbone(x)
    for ours, theirs in zip(stage_outputs, hidden_states):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
