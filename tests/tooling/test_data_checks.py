"""Bad data: missing files, nothing to learn, degenerate boxes, undecodable or misfitting files and odd image sizes
give a clear error or are skipped with a warning, never a crash deep in a stack trace or silently wrong metrics."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

import convnext_dense.datasets.transforms.guarded_load as data_guards
from convnext_dense.tooling.data_checks import check_annotations
from convnext_dense.datasets.transforms.guarded_load import BadSampleError
from convnext_dense.tooling.safeguards import guard_pipelines

REPO = Path(__file__).resolve().parents[2]
DET_CONFIG = REPO / 'configs/demo/mask_rcnn_convnext_atto_demo.py'
SEG_CONFIG = REPO / 'configs/demo/upernet_convnext_atto_demo.py'


@pytest.fixture
def coco(demo_data, tmp_path):
    """A private copy of the demo COCO set: (root, training annotations as a dict, save function)."""
    root = tmp_path / 'coco'
    shutil.copytree(demo_data / 'coco', root)
    ann_path = root / 'annotations/instances_train2017.json'
    ann = json.loads(ann_path.read_text())
    return root, ann, lambda: ann_path.write_text(json.dumps(ann))


@pytest.fixture
def ade(demo_data, tmp_path):
    root = tmp_path / 'ade'
    shutil.copytree(demo_data / 'ade/ADEChallengeData2016', root)
    return root


def det_config(root, guarded=False):
    cfg = Config.fromfile(str(DET_CONFIG))
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = f'{root}/'
    cfg.val_dataloader.dataset.ann_file = 'annotations/instances_train2017.json'  # evaluate on the edited files
    cfg.val_dataloader.dataset.data_prefix = dict(img='train2017/')
    if guarded:
        guard_pipelines(cfg)
    return cfg


def seg_config(root, guarded=False):
    cfg = Config.fromfile(str(SEG_CONFIG))
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = str(root)
    cfg.val_dataloader.dataset.data_prefix = dict(img_path='images/training', seg_map_path='annotations/training')
    if guarded:
        guard_pipelines(cfg)
    return cfg


def build_dataset(cfg, loader):
    scope = cfg.default_scope
    registry = __import__(f'{scope}.registry', fromlist=['DATASETS']).DATASETS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg[loader].dataset)


def image_path(root, ann, index):
    return root / 'train2017' / ann['images'][index]['file_name']


# ---- pre-flight checks of the annotation files -------------------------------------------------------------------

def test_images_listed_but_missing_are_counted_and_named(coco):
    root, ann, _ = coco
    for i in (1, 4):
        image_path(root, ann, i).unlink()
    errors, _ = check_annotations(det_config(root), ['train_dataloader'])
    assert len(errors) == 1
    assert '2 of the 6 images listed' in errors[0]
    assert ann['images'][1]['file_name'] in errors[0] and ann['images'][4]['file_name'] in errors[0]


def test_train_tool_stops_at_start_with_the_data_error_not_a_traceback(coco):
    root, ann, _ = coco
    image_path(root, ann, 0).unlink()
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools/train.py'), str(DET_CONFIG), '--work-dir', str(root.parent / 'work'),
         '--cfg-options', f'train_dataloader.dataset.data_root={root}/', f'val_dataloader.dataset.data_root={root}/',
         f'val_evaluator.ann_file={root}/annotations/instances_val2017.json'],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr
    assert f'1 of the 6 images listed in {root}/annotations/instances_train2017.json' in result.stderr
    assert ann['images'][0]['file_name'] in result.stderr


def test_a_training_set_with_nothing_to_learn_is_refused(coco):
    root, ann, save = coco
    for a in ann['annotations']:
        a['bbox'][2] = 0.  # zero width: mmdet drops them all, then fails with 'need at least one array to concatenate'
    save()
    errors, _ = check_annotations(det_config(root), ['train_dataloader'])
    assert any('no annotation usable for training' in e for e in errors)


def test_misspelt_classes_are_an_error_or_a_warning(coco):
    root, _, _ = coco
    cfg = det_config(root)
    cfg.train_dataloader.dataset.metainfo = dict(classes=('circle', 'sqaure', 'triangle'))
    errors, warnings = check_annotations(cfg, ['train_dataloader'])
    assert not errors and any("classes sqaure of the config are not categories" in w for w in warnings)
    cfg.train_dataloader.dataset.metainfo = dict(classes=('Circle', 'Square'))
    errors, _ = check_annotations(cfg, ['train_dataloader'])
    assert any('classes Circle, Square of the config are not categories' in e for e in errors)


def test_what_mmdet_drops_silently_is_reported(coco):
    root, ann, save = coco
    first = ann['annotations'][0]
    ann['annotations'] += [dict(first, id=1000, bbox=[10, 10, 0, 5], area=0.), dict(first, id=1001, area=0.)]
    ann['images'][2].update(width=20)  # under the demo's filter_cfg.min_size=32
    save()
    errors, warnings = check_annotations(det_config(root), ['train_dataloader'])
    assert not errors
    assert any('2 annotations have zero area' in w and '1000, 1001' in w and 'out of training' in w for w in warnings)
    assert any(f'smaller than filter_cfg.min_size=32 pixels and are left out of training: '
               f'{ann["images"][2]["file_name"]}' in w for w in warnings)
    # In an evaluation set they would count as objects to find: a different warning.
    cfg = det_config(root)
    _, warnings = check_annotations(cfg, ['val_dataloader'])
    assert any('COCO evaluation still counts them' in w for w in warnings)


def test_segmentation_images_without_label_maps_and_empty_folders_are_errors(ade):
    label = sorted((ade / 'annotations/training').glob('*.png'))[2]
    label.unlink()
    errors, _ = check_annotations(seg_config(ade), ['train_dataloader'])
    assert errors == [f'1 of the 6 images in {ade}/images/training have no label map in {ade}/annotations/training: '
                      f'{label.name}. Restore them, or remove their images']
    for image in (ade / 'images/training').glob('*.jpg'):
        image.unlink()
    errors, _ = check_annotations(seg_config(ade), ['train_dataloader'])
    assert len(errors) == 1 and "holds no image ending in '.jpg': the data set is empty" in errors[0]


# ---- samples that cannot be loaded or do not fit: skipped in training, refused in evaluation -----------------------

@pytest.fixture
def skipped(monkeypatch):
    """The warnings GuardedLoad logs for skipped samples."""
    messages = []
    monkeypatch.setattr(data_guards, 'print_log', lambda msg, **kwargs: messages.append(msg))
    return messages


def all_samples(dataset):
    return [dataset[i] for i in range(len(dataset))]


def test_bad_segmentation_samples_are_skipped_in_training_and_refused_in_evaluation(ade, skipped):
    images = sorted((ade / 'images/training').glob('*.jpg'))
    label = lambda image: ade / 'annotations/training' / image.name.replace('.jpg', '.png')  # noqa: E731
    images[0].write_bytes(b'not an image' * 20)
    cv2.imwrite(str(label(images[1])), np.ones((50, 60), np.uint8))  # wrong size
    cv2.imwrite(str(label(images[2])), np.full(cv2.imread(str(images[2])).shape[:2], 9, np.uint8))  # label 8 of 4
    cv2.imwrite(str(label(images[3])), cv2.imread(str(label(images[3])), cv2.IMREAD_COLOR))  # 3-channel map
    cv2.imwrite(str(images[4]), np.full((1, 1, 3), 128, np.uint8))  # 1x1: mmseg cannot read its label map
    cv2.imwrite(str(label(images[4])), np.full((1, 1), 2, np.uint8))
    reasons = ['cannot be loaded', 'the label map is 60x50 (w x h) but its image is', 'labels [8] are outside the 4',
               'the label map has shape', 'one pixel high or wide']

    samples = all_samples(build_dataset(seg_config(ade, guarded=True), 'train_dataloader'))
    assert all(s['data_samples'].img_path == str(images[5]) for s in samples), 'only the good sample is left'
    for image, reason in zip(images, reasons):
        assert any(str(image) in m and reason in m and 'skipped a training sample' in m for m in skipped), reason

    dataset = build_dataset(seg_config(ade, guarded=True), 'val_dataloader')
    for i, (image, reason) in enumerate(zip(images, reasons)):
        with pytest.raises(BadSampleError, match=f'{re.escape(str(image))}.*{re.escape(reason)}.*Evaluation stops'):
            dataset[i]


def test_bad_detection_samples_are_skipped_in_training_and_refused_in_evaluation(coco, skipped):
    root, ann, save = coco
    image_path(root, ann, 0).write_bytes(image_path(root, ann, 0).read_bytes()[:300])  # truncated jpeg
    ann['images'][1]['width'] *= 2  # an image that is not the size its annotation says
    save()
    samples = all_samples(build_dataset(det_config(root, guarded=True), 'train_dataloader'))
    assert {s['data_samples'].img_path for s in samples} <= {str(image_path(root, ann, i)) for i in range(2, 6)}
    assert any(str(image_path(root, ann, 0)) in m and 'cannot be loaded' in m for m in skipped)
    assert any(str(image_path(root, ann, 1)) in m and 'but its annotation says' in m for m in skipped)
    dataset = build_dataset(det_config(root, guarded=True), 'val_dataloader')
    with pytest.raises(BadSampleError, match='cannot be loaded'):
        dataset[0]
    with pytest.raises(BadSampleError, match='boxes and masks would be misplaced'):
        dataset[1]


# ---- degenerate boxes and odd image sizes train with finite losses ------------------------------------------------

def training_losses(cfg, samples):
    scope = cfg.default_scope
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model).train()
        batch = model.data_preprocessor(pseudo_collate(samples), True)
        losses = model(**batch, mode='loss')
    return {k: torch.stack([torch.as_tensor(x) for x in (v if isinstance(v, list) else [v])])
            for k, v in losses.items() if 'loss' in k}


def test_degenerate_boxes_and_odd_images_train_detection_with_finite_losses(coco):
    root, ann, save = coco
    images = ann['images']
    # A 33x4097 grayscale PNG with a box that shrinks to a twentieth of a pixel in the 192-pixel training scale.
    cv2.imwrite(str(root / 'train2017/thin.png'), (np.random.default_rng(0).random((33, 4097)) * 255).astype(np.uint8))
    # A 16-bit RGBA PNG, and a 1x1 image (kept: filter_cfg.min_size is lowered to 0 for it).
    rgba = cv2.imread(str(image_path(root, ann, 1)))
    alpha = np.full(rgba.shape[:2] + (1, ), 255, np.uint8)
    cv2.imwrite(str(root / 'train2017/rgba.png'), np.concatenate([rgba, alpha], 2).astype(np.uint16) * 257)
    cv2.imwrite(str(root / 'train2017/one.png'), np.full((1, 1, 3), 128, np.uint8))
    base = ann['annotations'][0]
    polygon = lambda x, y, w, h: [[x, y, x + w, y, x + w, y + h, x, y + h]]  # noqa: E731
    images[0].update(file_name='thin.png', width=4097, height=33)
    images[1].update(file_name='rgba.png')
    images[2].update(file_name='one.png', width=1, height=1)
    boxes = {images[0]['id']: [[100, 5, 50, 20], [2000, 10, 1, 1]], images[2]['id']: [[0, 0, 1, 1]],
             images[3]['id']: [[10, 10, 0, 5], [10, 10, 0.3, 0.3], [20, 20, 5, 5]]}
    for image_id, image_boxes in boxes.items():
        ann['annotations'] = [a for a in ann['annotations'] if a['image_id'] != image_id]
        ann['annotations'] += [dict(base, id=9000 + 10 * image_id + j, image_id=image_id, bbox=box,
                                    area=float(box[2] * box[3]), segmentation=polygon(*box))
                               for j, box in enumerate(image_boxes)]
    save()
    cfg = det_config(root, guarded=True)
    cfg.train_dataloader.dataset.filter_cfg.min_size = 0
    dataset = build_dataset(cfg, 'train_dataloader')
    samples = [dataset[i] for i in range(4)]
    assert [Path(s['data_samples'].img_path).name for s in samples][:3] == ['thin.png', 'rgba.png', 'one.png']
    counts = [len(s['data_samples'].gt_instances) for s in samples]
    assert (counts[0], counts[2], counts[3]) == (2, 1, 1)  # the zero-area and sub-pixel boxes are dropped
    assert all(s['inputs'].shape[0] == 3 for s in samples)  # grayscale and RGBA both become 3-channel
    for name, value in training_losses(cfg, samples).items():
        assert torch.isfinite(value).all(), name


def test_odd_images_train_segmentation_with_finite_losses(ade):
    images = sorted((ade / 'images/training').glob('*.jpg'))
    label = lambda image: ade / 'annotations/training' / image.name.replace('.jpg', '.png')  # noqa: E731
    cv2.imwrite(str(images[0]), (np.random.default_rng(0).random((33, 4097)) * 255).astype(np.uint8))
    cv2.imwrite(str(label(images[0])), np.full((33, 4097), 2, np.uint8))
    cv2.imwrite(str(label(images[1])), np.zeros(cv2.imread(str(images[1])).shape[:2], np.uint8))  # all unlabelled
    cfg = seg_config(ade, guarded=True)
    samples = [build_dataset(cfg, 'train_dataloader')[i] for i in range(2)]
    assert samples[0]['inputs'].shape[1] < 8, 'the thin image stays thin after the resize and crop'
    for name, value in training_losses(cfg, samples).items():
        assert torch.isfinite(value).all(), name
