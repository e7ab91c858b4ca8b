"""Bad data: missing files, nothing to learn, degenerate boxes, undecodable or misfitting files and odd image sizes
give a clear error or are skipped with a warning, never a crash deep in a stack trace or silently wrong metrics."""
import argparse
import json
import re
import shlex
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
from convnext_dense.apis.runner_setup import add_cfg_options_arg
from convnext_dense.datasets.data_checks import check_annotations, check_num_classes
from convnext_dense.datasets.transforms.guarded_load import BadSampleError
from convnext_dense.engine.safeguards import guard_pipelines

REPO = Path(__file__).resolve().parents[2]
DET_CONFIG = REPO / 'configs/demo/mask_rcnn_convnext_atto_demo.py'
CASCADE_CONFIG = REPO / 'configs/demo/cascade_rcnn_convnext_atto_demo.py'
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


# ---- heads for another number of classes than the data set's ---------------------------------------------------

LOADERS = ['train_dataloader', 'val_dataloader']


def cfg_options(*options):
    """``--cfg-options`` parsed as tools/train.py parses them."""
    parser = argparse.ArgumentParser()
    add_cfg_options_arg(parser)
    return parser.parse_args(['--cfg-options', *options]).cfg_options


def suggested_fix(error):
    """The error's ``--cfg-options ...``, parsed as the command line would."""
    return cfg_options(*shlex.split(error.split('--cfg-options ', 1)[1]))


def test_every_cascade_stage_and_the_mask_head_must_have_the_data_sets_classes():
    cfg = Config.fromfile(str(CASCADE_CONFIG))
    assert check_num_classes(cfg, LOADERS) == []
    cfg.merge_from_dict(cfg_options('model.roi_head.bbox_head.1.num_classes=80',
                                    'model.roi_head.mask_head.num_classes=2'))
    (error, ) = check_num_classes(cfg, LOADERS)
    assert ('train_dataloader.dataset and val_dataloader.dataset have 3 classes (circle, square, triangle), but '
            'model.roi_head.bbox_head.1.num_classes=80; model.roi_head.mask_head.num_classes=2.') in error
    assert 'device-side assert on a GPU' in error
    assert error.endswith('--cfg-options model.roi_head.bbox_head.1.num_classes=3 '
                          'model.roi_head.mask_head.num_classes=3')
    cfg.merge_from_dict(suggested_fix(error))  # mmengine addresses list items by index: bbox_head.1
    assert [head.num_classes for head in cfg.model.roi_head.bbox_head] == [3, 3, 3]
    assert check_num_classes(cfg, LOADERS) == []


def test_single_stage_heads_are_checked_and_the_rpn_and_class_agnostic_mask_heads_are_not():
    # mmdet's CocoDataset has the 80 COCO classes unless metainfo says otherwise.
    coco = dict(type='CocoDataset', data_root='data/coco/')
    cfg = Config(dict(default_scope='mmdet', train_dataloader=dict(dataset=coco),
                      model=dict(type='RetinaNet', bbox_head=dict(type='RetinaHead', num_classes=80))))
    assert check_num_classes(cfg, ['train_dataloader']) == []
    cfg.train_dataloader.dataset.metainfo = dict(classes=('cat', 'dog'))
    (error, ) = check_num_classes(cfg, ['train_dataloader'])
    assert "has 2 classes (cat, dog), but model.bbox_head.num_classes=80" in error
    assert error.endswith('--cfg-options model.bbox_head.num_classes=2')
    one_class = dict(dataset=dict(coco, metainfo=dict(classes=('cat', ))))
    heads = dict(rpn_head=dict(num_classes=1),
                 roi_head=dict(bbox_head=dict(num_classes=1), mask_head=dict(num_classes=80, class_agnostic=True)))
    cfg = Config(dict(default_scope='mmdet', train_dataloader=one_class, model=heads))
    assert check_num_classes(cfg, ['train_dataloader']) == []


def test_segmentation_heads_lists_and_the_dataset_types_classes():
    cfg = Config.fromfile(str(SEG_CONFIG))
    assert check_num_classes(cfg, LOADERS) == []
    cfg.model.auxiliary_head = [dict(cfg.model.auxiliary_head), dict(cfg.model.auxiliary_head, num_classes=150)]
    (error, ) = check_num_classes(cfg, LOADERS)
    assert 'have 4 classes (background, circle, square, triangle), but model.auxiliary_head.1.num_classes=150.' in error
    cfg.merge_from_dict(suggested_fix(error))
    assert check_num_classes(cfg, LOADERS) == []
    # ADE20KDataset lists 150 classes; reduce_zero_label does not change how many.
    for loader in LOADERS:
        cfg[loader].dataset = dict(type='ADE20KDataset', reduce_zero_label=True)
    (error, ) = check_num_classes(cfg, LOADERS)
    assert 'have 150 classes (wall, building' in error
    assert error.endswith('--cfg-options model.decode_head.num_classes=150 model.auxiliary_head.0.num_classes=150 '
                          'model.auxiliary_head.1.num_classes=150')


@pytest.mark.parametrize('num_classes', [1, 2])
def test_binary_segmentation_heads_fit_two_classes(num_classes):
    cfg = Config.fromfile(str(SEG_CONFIG))
    for loader in LOADERS:
        cfg[loader].dataset.metainfo = dict(classes=('background', 'foreground'))
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.update(num_classes=num_classes, out_channels=1,
                    loss_decode=dict(head.loss_decode, use_sigmoid=True))
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        assert MODELS.build(cfg.model.decode_head).out_channels == 1  # mmseg's own rule accepts both
    assert check_num_classes(cfg, LOADERS) == []
    cfg.train_dataloader.dataset.metainfo = dict(classes=('background', 'road', 'sky'))
    (error, ) = check_num_classes(cfg, LOADERS)
    assert (f'train_dataloader.dataset has 3 classes (background, road, sky), but model.decode_head.num_classes='
            f'{num_classes} with out_channels=1 (binary: 2 classes)') in error
    cfg.merge_from_dict(suggested_fix(error))
    assert (cfg.model.decode_head.num_classes, cfg.model.decode_head.out_channels) == (3, 3)
    assert check_num_classes(cfg, ['train_dataloader']) == []


# ---- label maps holding values that are no class -----------------------------------------------------------------

def write_label_map(path, values):
    """A label map holding ``values`` (one per column, repeated over 8 rows)."""
    values = np.asarray(values)
    cv2.imwrite(str(path), np.repeat(values[None], 8, 0).astype(np.uint16 if values.max() > 255 else np.uint8))


def mmseg_labels(cfg, loader, index):
    """What mmseg's own dataset and LoadAnnotations make of sample ``index``: its training labels."""
    from mmseg.registry import TRANSFORMS
    dataset = build_dataset(cfg, loader)
    with DefaultScope.overwrite_default_scope('mmseg'):
        load = TRANSFORMS.build(dict(type='LoadAnnotations'))
    return load(dict(dataset.get_data_info(index), seg_fields=[]))['gt_seg_map']


def reported_values(error):
    return [int(v) for v in re.search(r'file values ([\d, ]+), in', error).group(1).split(', ')]


VALUES = [0, 1, 2, 3, 4, 5, 6, 7, 150, 151, 200, 254, 255]


@pytest.mark.parametrize('dataset', [
    dict(reduce_zero_label=True),  # the demo's BaseSegDataset, 4 classes: file values 1..4 and 0 (ignored)
    dict(reduce_zero_label=False),  # file values 0..3
    dict(type='ADE20KDataset', metainfo=dict(classes=('wall', 'floor')), reduce_zero_label=True),  # mmseg's label_map
], ids=['reduce_zero_label', 'plain', 'subset-of-ade20k-classes'])
def test_label_values_beyond_the_classes_are_found_as_mmseg_maps_them(ade, dataset):
    labels = sorted((ade / 'annotations/training').glob('*.png'))
    write_label_map(labels[1], VALUES)
    write_label_map(labels[4], [1, 2, 255])  # good in every case
    cfg = seg_config(ade)
    cfg.train_dataloader.dataset.update(dataset)
    cfg.train_dataloader.dataset.pipeline[1] = dict(type='LoadAnnotations')  # reduce_zero_label from the dataset
    if dataset.get('type') == 'ADE20KDataset':
        cfg.train_dataloader.dataset.img_suffix, cfg.train_dataloader.dataset.seg_map_suffix = '.jpg', '.png'

    num_classes = len(cfg.train_dataloader.dataset.metainfo.classes)
    out_of_range = mmseg_labels(cfg, 'train_dataloader', 1)[0]
    expected = [v for v, label in zip(VALUES, out_of_range) if label >= num_classes and label != 255]
    errors, _ = check_annotations(cfg, ['train_dataloader'])
    bad_in = [e for e in errors if 'hold values that are none of the' in e]
    assert len(bad_in) == 1, errors
    error = bad_in[0]
    assert reported_values(error) == expected
    shown = ', '.join(map(str, expected[:5])) + (f' and {len(expected) - 5} more' if len(expected) > 5 else '')
    assert f'{labels[1].name} ({shown})' in error
    assert labels[4].name not in error
    assert 'garbage targets on a CPU, a device-side assert on a GPU' in error
    assert 'remap the labels in the files' in error and 'reduce_zero_label' in error


def test_label_maps_that_fit_give_no_error_and_the_hint_for_an_unlabelled_zero(ade):
    cfg = seg_config(ade)
    assert check_annotations(cfg, LOADERS) == ([], [])  # the demo's maps: 0 unlabelled, 1..4 classes
    cfg = seg_config(ade)
    for loader in LOADERS:
        cfg[loader].dataset.reduce_zero_label = False
        cfg[loader].dataset.pipeline = [dict(type='LoadAnnotations') if step.type == 'LoadAnnotations' else step
                                        for step in cfg[loader].dataset.pipeline]
    errors, _ = check_annotations(cfg, LOADERS)
    assert len(errors) == 2 and all('with reduce_zero_label=False (file value v is class v)' in e for e in errors)
    assert 'if 0 marks unlabelled pixels, set train_dataloader.dataset.reduce_zero_label=True' in errors[0]


def test_reduce_zero_label_of_dataset_and_pipeline_must_agree(ade):
    cfg = seg_config(ade)
    cfg.train_dataloader.dataset.reduce_zero_label = False
    errors, _ = check_annotations(cfg, ['train_dataloader'])
    assert errors == ["train_dataloader.dataset: the dataset has reduce_zero_label=False but its pipeline's "
                      'LoadAnnotations has reduce_zero_label=True; mmseg stops at the first label map. Set both to '
                      'the same value']


def test_dataset_types_of_mmseg_with_their_own_classes(ade):
    # PascalVOCDataset takes reduce_zero_label through **kwargs (default False): its 21 classes cover 0..4.
    stems = sorted(p.stem for p in (ade / 'images/training').glob('*.jpg'))
    (ade / 'train.txt').write_text('\n'.join(stems))
    cfg = seg_config(ade)
    voc = dict(type='PascalVOCDataset', data_root=str(ade), ann_file='train.txt',
               data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
               pipeline=[dict(type='LoadAnnotations')])
    cfg.train_dataloader.dataset = voc
    assert check_annotations(cfg, ['train_dataloader']) == ([], [])
    # A subset of its classes: mmseg's label_map sends the others (file values up to 21) to 255, not those beyond.
    write_label_map(ade / 'annotations/training' / f'{stems[0]}.png', [1, 4, 21, 30])
    cfg.train_dataloader.dataset = dict(voc, reduce_zero_label=True, metainfo=dict(classes=('background', 'cat')))
    (error, ), _ = check_annotations(cfg, ['train_dataloader'])
    assert f'file values 30, in {stems[0]}.png (30);' in error
    cfg.train_dataloader.dataset.metainfo = dict(classes=('background', 'circle'))
    (error, ), _ = check_annotations(cfg, ['train_dataloader'])
    assert error.startswith('train_dataloader.dataset: classes circle are not classes of PascalVOCDataset '
                            '(background, aeroplane, bicycle, bird, boat and 16 more)')
    assert "use type='BaseSegDataset'" in error


def test_colour_and_16_bit_label_maps_are_errors(ade):
    labels = sorted((ade / 'annotations/training').glob('*.png'))
    cv2.imwrite(str(labels[0]), cv2.imread(str(labels[0]), cv2.IMREAD_COLOR))
    write_label_map(labels[2], [1, 2, 300])
    errors, _ = check_annotations(seg_config(ade), ['train_dataloader'])
    assert len(errors) == 2
    assert 'of the 6 label maps read are colour images' in errors[0] and str(labels[0]) in errors[0]
    assert 'hold values above 255' in errors[1] and str(labels[2]) in errors[1]


def test_large_sets_are_sampled_evenly(tmp_path):
    images, labels = tmp_path / 'img', tmp_path / 'ann'
    images.mkdir(), labels.mkdir()
    for i in range(601):
        (images / f'{i:04d}.jpg').write_bytes(b'')  # never decoded by the check
        write_label_map(labels / f'{i:04d}.png', [1, 9] if i % 2 == 0 else [1])
    cfg = Config.fromfile(str(SEG_CONFIG))
    cfg.train_dataloader.dataset.update(data_root=str(tmp_path), data_prefix=dict(img_path='img', seg_map_path='ann'))
    (error, ) = check_annotations(cfg, ['train_dataloader'])[0]
    # every third map (601 / 300 rounded up): 0000, 0003, 0006, ... half of them even
    assert 'train_dataloader.dataset: 101 of the 201 label maps read (spread over all 601) hold values' in error
    assert 'in 0000.png (9), 0006.png (9), 0012.png (9) and 98 more' in error


# ---- tools/train.py stops before building the model --------------------------------------------------------------

def run_train(config, *options, work_dir):
    return subprocess.run([sys.executable, str(REPO / 'tools/train.py'), str(config), '--work-dir', str(work_dir),
                           '--cfg-options', *options], capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.slow
def test_train_tool_refuses_heads_for_more_classes_up_front(coco):
    root, _, _ = coco
    work_dir = root.parent / 'work'
    result = run_train(DET_CONFIG, 'model.roi_head.bbox_head.num_classes=80',
                       f'train_dataloader.dataset.data_root={root}/', f'val_dataloader.dataset.data_root={root}/',
                       f'val_evaluator.ann_file={root}/annotations/instances_val2017.json', work_dir=work_dir)
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: the model's heads do not fit the data") and \
        message.endswith('--cfg-options model.roi_head.bbox_head.num_classes=3'), message
    assert not work_dir.exists(), 'the Runner (which creates the work dir) was never built'


@pytest.mark.slow
def test_train_tool_refuses_label_maps_with_values_beyond_the_classes_up_front(ade):
    label = sorted((ade / 'annotations/validation').glob('*.png'))[0]
    write_label_map(label, [0, 1, 2, 9])
    work_dir = ade.parent / 'work'
    result = run_train(SEG_CONFIG, f'train_dataloader.dataset.data_root={ade}',
                       f'val_dataloader.dataset.data_root={ade}', work_dir=work_dir)
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith('error: val_dataloader.dataset: 1 of the 2 label maps read hold values') and \
        f'file values 9, in {label.name} (9)' in message and 'device-side assert on a GPU' in message, message
    assert not work_dir.exists()


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
