"""Released mmdet / mmseg model-zoo ConvNeXt models (mmpretrain's ConvNeXt inside) give the same predictions in our
configs as in mmdet's and mmseg's own: each model is built from their config with random weights, saved as their zoo
saves it (mmengine's checkpoint after publish_model: ``meta`` with ``dataset_meta``, and ``state_dict``), and tested
with tools/test.py --out under both configs on the synthetic data (COCO and ADE20K layouts)."""
import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, import_mmpretrain_convnext
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

import convnext_dense  # noqa: F401  (mmseg:: / mmdet:: config references resolve on the OneDL stack)
from convnext_dense.evaluation.detection_matching import match_detections

pytestmark = pytest.mark.slow
CLASSES = ['circle', 'square', 'triangle']


def coco_options(root, num_classes_keys):
    options = {'model.backbone.init_cfg': None, 'test_dataloader.dataset.data_root': f'{root}/coco/',
               'test_dataloader.dataset.metainfo': dict(classes=CLASSES),
               'test_evaluator.ann_file': f'{root}/coco/annotations/instances_val2017.json',
               'test_dataloader.dataset.pipeline.1.scale': (256, 256)}  # Resize: a CPU-sized test
    options.update({key: len(CLASSES) for key in num_classes_keys})
    return options


MASK_RCNN_CLASSES = ['model.roi_head.bbox_head.num_classes', 'model.roi_head.mask_head.num_classes']
CASCADE_CLASSES = [f'model.roi_head.bbox_head.{i}.num_classes' for i in range(3)] + \
    ['model.roi_head.mask_head.num_classes']
CASES = {
    'mask_rcnn': ('mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
                  'configs/mask_rcnn/convnext_t_3x.py', MASK_RCNN_CLASSES, {}),
    'cascade': ('mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
                'configs/cascade_rcnn/convnext_t_3x.py', CASCADE_CLASSES, {}),
    # mmdet's projects/ConvNeXt-V2/configs/mask-rcnn_convnext-v2-b_fpn_lsj-3x-fcmae_coco.py (not in the mmdet wheel):
    # mmdet's Mask R-CNN with mmpretrain's ConvNeXt, GRN, no layer scale, soft-NMS at test time; at size T here to
    # keep the test short (the project has B only, and released no weights). Our V2 recipe uses standard NMS; the
    # test evaluates as mmdet did, with soft-NMS.
    'mask_rcnn_v2': ('mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
                     'configs/mask_rcnn/convnextv2_t_3x.py', MASK_RCNN_CLASSES,
                     {'model.backbone.use_grn': True, 'model.backbone.layer_scale_init_value': 0.,
                      'model.test_cfg.rcnn.nms.type': 'soft_nms'}),
}


def config_file(source: str) -> str:
    """A config of ours (relative to the repository) or one shipped with mmdet / mmseg (``scope::path``)."""
    if '::' not in source:
        return str(REPO / source)
    scope, relative = source.split('::')
    return str(Path(importlib.import_module(scope).__file__).parent / '.mim' / 'configs' / relative)


def dump_config(source, options, path) -> str:
    cfg = Config.fromfile(config_file(source))
    cfg.merge_from_dict(options)
    cfg.dump(str(path))
    return str(path)


def zoo_checkpoint(config_path, path) -> str:
    """Their model with random weights, saved as mmdet's / mmseg's zoo files are."""
    cfg = Config.fromfile(config_path)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'meta': {'mmengine_version': '0.10.7', 'epoch': 36, 'iter': 263520,
                         'dataset_meta': dict(classes=tuple(CLASSES))},
                'state_dict': model.state_dict()}, path)
    return str(path)


def predictions_of(config, checkpoint, out, cwd) -> list:
    result = subprocess.run([sys.executable, str(REPO / 'tools/test.py'), config, checkpoint, '--out', str(out),
                             '--work-dir', str(out.parent / out.stem)],
                            cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(out, 'rb') as f:
        return pickle.load(f), result.stdout + result.stderr


@pytest.mark.parametrize('case', list(CASES))
def test_mmdet_zoo_detector_predicts_the_same_in_our_config(case, demo_data, tmp_path):
    import_mmpretrain_convnext()
    theirs, ours, class_keys, extra = CASES[case]
    options = {**coco_options(demo_data, class_keys), 'model.backbone.type': 'mmpretrain.ConvNeXt'}
    their_config = dump_config(theirs, {**options, **extra}, tmp_path / 'theirs.py')
    our_options = coco_options(demo_data, class_keys)
    if 'model.test_cfg.rcnn.nms.type' in extra:
        our_options['model.test_cfg.rcnn.nms.type'] = extra['model.test_cfg.rcnn.nms.type']
    our_config = dump_config(ours, our_options, tmp_path / 'ours.py')
    checkpoint = zoo_checkpoint(their_config, tmp_path / 'zoo.pth')

    expected, _ = predictions_of(their_config, checkpoint, tmp_path / 'theirs.pkl', tmp_path)
    predicted, log = predictions_of(our_config, checkpoint, tmp_path / 'ours.pkl', tmp_path)
    assert "mmdet 3.x / mmseg 1.x model-zoo checkpoint (mmpretrain's / mmcls' ConvNeXt)" in log
    assert len(predicted) == len(expected) == 2
    for ours_, theirs_ in zip(predicted, expected):
        assert len(theirs_['pred_instances']['scores']) > 0, 'a comparison of empty predictions proves nothing'
        assert_same_detections(ours_['pred_instances'], theirs_['pred_instances'])


def assert_same_detections(ours, theirs):
    """The same detections, matched one to one. Features agree to ~1e-5 (the two backbones sum in different orders),
    so detections whose scores tie that closely may come out in another order, and at the ``max_per_img`` cut one may
    swap for another: only those at the lowest kept score may go unmatched. Mask logits at the 0.5 threshold may flip
    a pixel or two, so matched masks may differ in 1% of their union."""
    matched = match_detections(theirs, ours, box_tolerance=1e-2, score_tolerance=1e-4)
    their_scores, our_scores = np.asarray(theirs['scores']), np.asarray(ours['scores'])
    lowest = min(their_scores.min(), our_scores.min())
    left = [their_scores[i] for i in matched.unmatched_reference] + [our_scores[j] for j in matched.unmatched_other]
    assert all(score <= lowest + 1e-4 for score in left), matched
    assert matched.mask_union <= 0.01, matched


def test_mmseg_zoo_upernet_predicts_the_same_in_our_config(demo_data, tmp_path):
    import_mmpretrain_convnext()
    # Resize to one CPU-sized 320 x 256 window, a multiple of 32: on other sizes mmpretrain's stem and downsampling
    # layers crop the last rows / columns where ours pad them (Downsample in our backbone) so every pixel is seen.
    options = {'model.backbone.init_cfg': None,
               'test_dataloader.dataset.data_root': f'{demo_data}/ade/ADEChallengeData2016',
               'test_dataloader.dataset.pipeline.1.scale': (256, 320),
               'test_dataloader.dataset.pipeline.1.keep_ratio': False}
    their_config = dump_config('mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py', options,
                               tmp_path / 'theirs.py')
    our_config = dump_config('configs/upernet/convnext_t_160k_ade20k.py', options, tmp_path / 'ours.py')
    checkpoint = zoo_checkpoint(their_config, tmp_path / 'zoo.pth')

    expected, _ = predictions_of(their_config, checkpoint, tmp_path / 'theirs.pkl', tmp_path)
    predicted, log = predictions_of(our_config, checkpoint, tmp_path / 'ours.pkl', tmp_path)
    assert "mmdet 3.x / mmseg 1.x model-zoo checkpoint (mmpretrain's / mmcls' ConvNeXt)" in log
    for ours_, theirs_ in zip(predicted, expected):
        np.testing.assert_allclose(ours_['seg_logits']['data'], theirs_['seg_logits']['data'], rtol=1e-4, atol=1e-4)
        assert (ours_['pred_sem_seg']['data'] == theirs_['pred_sem_seg']['data']).all()


def test_huggingface_upernet_folder_evaluates_with_tools_test(demo_data, tmp_path):
    """A folder written by transformers' save_pretrained is a checkpoint for tools/test.py (here transformers' UperNet
    with the demo config's architecture: ConvNeXt-atto, 64 / 32 head channels, 4 classes)."""
    transformers = pytest.importorskip('transformers', reason='transformers (the reference for the Hugging Face '
                                       'layouts) is not installed on this stack')
    backbone = transformers.ConvNextConfig(depths=[2, 2, 6, 2], hidden_sizes=[40, 80, 160, 320],
                                           out_features=['stage1', 'stage2', 'stage3', 'stage4'])
    config = transformers.UperNetConfig(backbone_config=backbone, hidden_size=64, auxiliary_in_channels=160,
                                        auxiliary_channels=32, num_labels=4,
                                        id2label=dict(enumerate(['background', *CLASSES])))
    torch.manual_seed(0)
    transformers.UperNetForSemanticSegmentation(config).save_pretrained(tmp_path / 'hf-upernet')
    result = subprocess.run([sys.executable, str(REPO / 'tools/test.py'),
                             str(REPO / 'configs/demo/upernet_convnext_atto_demo.py'), str(tmp_path / 'hf-upernet'),
                             '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                             f'test_dataloader.dataset.data_root={demo_data}/ade/ADEChallengeData2016'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Hugging Face UperNetForSemanticSegmentation' in result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith('metrics: ')


def test_fine_tuning_a_release_on_other_classes_starts_the_class_layers_fresh(demo_data, tmp_path):
    """load_from a COCO detector (80 classes, the official mmdet 2.x layout) on the 3-class demo set: everything but
    the class layers loads, and the log lists those."""
    cfg = Config.fromfile(str(REPO / 'configs/demo/mask_rcnn_convnext_atto_demo.py'))
    cfg.merge_from_dict({'model.roi_head.bbox_head.num_classes': 80, 'model.roi_head.mask_head.num_classes': 80})
    init_default_scope('mmdet')
    coco = MODELS.build(cfg.model)
    torch.save({'meta': {'mmdet_version': '2.17.0', 'CLASSES': tuple(f'c{i}' for i in range(80))},
                'state_dict': coco.state_dict()}, tmp_path / 'mask_rcnn_coco.pth')
    result = subprocess.run([sys.executable, str(REPO / 'tools/train.py'),
                             str(REPO / 'configs/demo/mask_rcnn_convnext_atto_demo.py'),
                             '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                             f'load_from={tmp_path / "mask_rcnn_coco.pth"}', 'train_cfg.max_epochs=1',
                             'train_cfg.val_interval=1', f'train_dataloader.dataset.data_root={demo_data}/coco/',
                             f'val_dataloader.dataset.data_root={demo_data}/coco/',
                             f'test_dataloader.dataset.data_root={demo_data}/coco/',
                             f'val_evaluator.ann_file={demo_data}/coco/annotations/instances_val2017.json',
                             f'test_evaluator.ann_file={demo_data}/coco/annotations/instances_val2017.json'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert 'class layers left at their initial values' in log
    assert 'roi_head.bbox_head.fc_cls.weight' in log and 'roi_head.mask_head.conv_logits.weight' in log
