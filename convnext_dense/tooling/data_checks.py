"""Pre-flight checks of the annotations a run will read: what would stop it hours in, or quietly leave data out or
skew the metrics, found in seconds at start-up.

COCO-style sets (mmdet, an ``ann_file`` JSON): images listed but not on disk; config classes that match no category
of the file (a misspelt class is never trained); a training set with nothing usable left (mmdet fails with ``need at
least one array to concatenate``). Warnings for what mmdet does without a word: it drops boxes of zero area or under a
pixel, and images without annotations or under ``filter_cfg.min_size``, from training, while COCO evaluation still
counts such boxes as objects to find. mmseg folder sets: images without their label map, or no image at all.
"""
import inspect
import json
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

from ..utils import first_n
from .config_tree import leaf_datasets



def check_annotations(cfg, loaders: Sequence[str]) -> Tuple[List[str], List[str]]:
    """The errors and the warnings about the annotations of ``loaders`` (dataloader names in ``cfg``)."""
    errors, warnings = [], []
    for loader in loaders:
        if not cfg.get(loader):
            continue
        for key, dataset in leaf_datasets(cfg[loader].dataset, f'{loader}.dataset'):
            if cfg.default_scope == 'mmdet':
                found = _check_coco(dataset, key, loader == 'train_dataloader', dataset_classes('mmdet', dataset))
            else:
                found = _check_seg_folders(dataset, key)
            errors += found[0]
            warnings += found[1]
    return errors, warnings


def dataset_classes(scope: str, dataset: dict) -> Optional[Sequence[str]]:
    """The class names a dataset config trains: its ``metainfo.classes``, else its dataset type's."""
    classes = (dataset.get('metainfo') or {}).get('classes')
    return classes if classes is not None else getattr(_dataset_class(scope, dataset), 'METAINFO', {}).get('classes')


def _check_coco(dataset: dict, key: str, training: bool, classes) -> Tuple[List[str], List[str]]:
    root = dataset.get('data_root') or ''
    ann_file = osp.join(root, dataset.get('ann_file') or '')
    if not ann_file.endswith('.json') or not osp.isfile(ann_file):
        return [], []
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        return [f'{ann_file} ({key}.ann_file) is not valid JSON: {exc}'], []
    images, annotations = coco.get('images', []), coco.get('annotations', [])
    errors, warnings = [], []
    image_dir = osp.join(root, (dataset.get('data_prefix') or {}).get('img', ''))
    missing = [im['file_name'] for im in images if not osp.isfile(osp.join(image_dir, im['file_name']))]
    if missing:
        errors.append(f'{len(missing)} of the {len(images)} images listed in {ann_file} are not in {image_dir}: '
                      f'{first_n(missing)}. Restore them, or remove them (with their annotations) from the file')

    names = {c['id']: c['name'] for c in coco.get('categories', [])}
    if classes is not None:
        unknown = [c for c in classes if c not in names.values()]
        if unknown:
            (errors if len(unknown) == len(classes) else warnings).append(
                f'{key}: classes {first_n(unknown)} of the config are not categories of {ann_file} (which has '
                f'{first_n(sorted(names.values()))}); they get no annotations. Fix metainfo.classes')
    wanted = {i for i, name in names.items() if classes is None or name in classes}
    degenerate = [a for a in annotations if a.get('category_id') in wanted
                  and (a.get('area', 0) <= 0 or a['bbox'][2] < 1 or a['bbox'][3] < 1)]
    if degenerate:
        effect = 'mmdet leaves them out of training' if training else \
            'COCO evaluation still counts them as objects to find, which lowers AP and recall'
        warnings.append(f'{ann_file}: {len(degenerate)} annotations have zero area or a box under one pixel wide or '
                        f'high (ids {first_n([a.get("id") for a in degenerate])}); {effect}. Remove them from the file')
    if not training:
        return errors, warnings

    usable = {a['image_id'] for a in annotations if a.get('category_id') in wanted and not a.get('ignore')
              and a.get('area', 0) > 0 and a['bbox'][2] >= 1 and a['bbox'][3] >= 1}
    if images and not usable:
        errors.append(f'{ann_file} ({key}): no annotation usable for training (of the config\'s classes, with a '
                      'non-zero box): the training set would be empty')
    filter_cfg = dataset.get('filter_cfg') or {}
    if filter_cfg.get('filter_empty_gt') and len(usable) < len(images):
        warnings.append(f'{ann_file}: {len(images) - len(usable)} of {len(images)} images have no usable annotation '
                        'and are left out of training (filter_cfg.filter_empty_gt=True)')
    min_size = filter_cfg.get('min_size', 0)
    small = [im['file_name'] for im in images if min(im.get('width', min_size), im.get('height', min_size)) < min_size]
    if small:
        warnings.append(f'{ann_file}: {len(small)} images are smaller than filter_cfg.min_size={min_size} pixels and '
                        f'are left out of training: {first_n(small)}')
    return errors, warnings


def _check_seg_folders(dataset: dict, key: str) -> Tuple[List[str], List[str]]:
    root = dataset.get('data_root') or ''
    prefix = dataset.get('data_prefix') or {}
    if not prefix.get('seg_map_path'):
        return [], []
    image_dir, label_dir = osp.join(root, prefix.get('img_path', '')), osp.join(root, prefix['seg_map_path'])
    img_suffix, seg_suffix = (_setting(dataset, 'mmseg', name) for name in ('img_suffix', 'seg_map_suffix'))
    if not osp.isdir(image_dir) or not osp.isdir(label_dir):
        return [], []  # a missing folder is reported by the path checks
    ann_file = osp.join(root, dataset['ann_file']) if dataset.get('ann_file') else None
    if ann_file and osp.isfile(ann_file):
        with open(ann_file) as f:
            stems = [line.strip() for line in f if line.strip()]
    else:
        stems = sorted(osp.relpath(osp.join(d, name), image_dir)[:-len(img_suffix)]
                       for d, _, names in os.walk(image_dir) for name in names if name.endswith(img_suffix))
    if not stems:
        return [f'{image_dir} ({key}) holds no image ending in {img_suffix!r}: the data set is empty. Check '
                'data_prefix.img_path and img_suffix'], []
    missing = [stem + seg_suffix for stem in stems if not osp.isfile(osp.join(label_dir, stem + seg_suffix))]
    if missing:
        return [f'{len(missing)} of the {len(stems)} images in {image_dir} have no label map in {label_dir}: '
                f'{first_n(missing)}. Restore them, or remove their images'], []
    return [], []


def _dataset_class(scope: str, dataset: dict):
    registry = __import__(f'{scope}.registry', fromlist=['DATASETS']).DATASETS
    return registry.get(dataset.get('type', ''))


def _setting(dataset: dict, scope: str, name: str):
    """A dataset argument: from the config, else the dataset class's default."""
    if name in dataset:
        return dataset[name]
    return inspect.signature(_dataset_class(scope, dataset).__init__).parameters[name].default
