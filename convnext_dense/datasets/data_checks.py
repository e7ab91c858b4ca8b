"""Pre-flight checks of the annotations a run will read: what would stop it hours in, or quietly leave data out or
skew the metrics, found in seconds at start-up.

COCO-style sets (mmdet, an ``ann_file`` JSON): images listed but not on disk; config classes that match no category
of the file (a misspelt class is never trained); a training set with nothing usable left (mmdet fails with ``need at
least one array to concatenate``). Warnings for what mmdet does without a word: it drops boxes of zero area or under a
pixel, and images without annotations or under ``filter_cfg.min_size``, from training, while COCO evaluation still
counts such boxes as objects to find. mmseg folder sets: images without their label map, or no image at all, and
label maps (a sample spread over the set) holding values that are no class after mmseg's label mapping.
Both: heads whose ``num_classes`` is not the data set's number of classes (:func:`check_num_classes`).
"""
import inspect
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

import mmcv
import numpy as np

from ..utils import first_n
from ..utils.config_tree import leaf_datasets, walk
from .transforms.guarded_load import IGNORE_INDEX

# The heads whose num_classes must be the data set's number of classes (the RPN is class-agnostic).
CLASS_HEADS = dict(mmdet=re.compile(r'model\.(roi_head\.(bbox_head|mask_head)|bbox_head)(\.\d+)?'),
                   mmseg=re.compile(r'model\.(decode_head|auxiliary_head)(\.\d+)?'))
MAX_LABEL_MAPS = 300  # label maps read per data set, spread over it: a few seconds for 512x512 PNGs


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
                found = _check_seg_folders(dataset, key, ignore_index(cfg))
            errors += found[0]
            warnings += found[1]
    return errors, warnings


def check_num_classes(cfg, loaders: Sequence[str]) -> List[str]:
    """Errors for heads whose ``num_classes`` is not the number of classes of the data sets of ``loaders``: mmdet's
    box and mask heads (every cascade stage) and single-stage ``bbox_head``, mmseg's decode and auxiliary heads.
    mmseg's binary heads (``out_channels=1``) fit a data set of two classes whatever their ``num_classes``."""
    scope = cfg.default_scope
    heads = [(key, head) for key, head in walk(cfg.get('model'), 'model')
             if CLASS_HEADS[scope].fullmatch(key) and 'num_classes' in head and not head.get('class_agnostic')]
    by_count: Dict[int, Tuple[Sequence[str], List[str]]] = {}
    for loader in loaders:
        if not cfg.get(loader):
            continue
        for key, dataset in leaf_datasets(cfg[loader].dataset, f'{loader}.dataset'):
            classes = dataset_classes(scope, dataset)
            if classes is not None:
                by_count.setdefault(len(classes), (classes, []))[1].append(key)
    errors = []
    for count, (classes, keys) in by_count.items():
        wrong = [(key, head) for key, head in heads if not _head_fits(scope, head, count)]
        if not wrong:
            continue
        found = '; '.join(f'{key}.num_classes={head.num_classes}'
                          + (' with out_channels=1 (binary: 2 classes)' if _binary(scope, head) else '')
                          for key, head in wrong)
        fixes = ' '.join(f'{key}.num_classes={count}' + (f' {key}.out_channels={count}' if _binary(scope, head) else '')
                         for key, head in wrong)
        errors.append(
            f'the model\'s heads do not fit the data: {" and ".join(keys)} {"has" if len(keys) == 1 else "have"} '
            f'{count} classes ({first_n(classes)}), but {found}. Heads with more classes than the data train outputs '
            'no label asks for and predict classes the evaluation cannot name; with fewer, the labels beyond them are '
            'garbage targets on a CPU and a device-side assert on a GPU. Set num_classes to the number of classes in '
            f'every head of the config, or on the command line: --cfg-options {fixes}')
    return errors


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


def _check_seg_folders(dataset: dict, key: str, ignore_index: int) -> Tuple[List[str], List[str]]:
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
    return _check_label_values(dataset, key, [osp.join(label_dir, stem + seg_suffix) for stem in stems],
                               ignore_index), []


def _check_label_values(dataset: dict, key: str, label_files: Sequence[str], ignore_index: int) -> List[str]:
    """Read a sample of the label maps as mmseg's ``LoadAnnotations`` does (8 bits, ``reduce_zero_label``, the
    dataset's ``label_map`` for a subset of its type's classes): every value must be a class or the ignore index.
    A file that cannot be read is left to :class:`GuardedLoad`, which names it when the run reaches it."""
    loader = next((step for _, step in walk(dataset.get('pipeline'), 'pipeline')
                   if str(step.get('type')).split('.')[-1] == 'LoadAnnotations'), None)
    classes, dataset_type = dataset_classes('mmseg', dataset), _dataset_class('mmseg', dataset)
    if loader is None or classes is None or dataset_type is None:
        return []  # the labels are not read, or there are no classes to check them against
    own = getattr(dataset_type, 'METAINFO', {}).get('classes')
    unknown = [c for c in classes if own is not None and c not in own]
    if unknown:  # mmseg maps a subset of a dataset type's classes, and fails on others
        return [f'{key}: classes {first_n(unknown)} are not classes of {dataset.type} ({first_n(own)}); for classes '
                'of your own use type=\'BaseSegDataset\' with img_suffix, seg_map_suffix and reduce_zero_label']
    reduce_zero_label = _setting(dataset, 'mmseg', 'reduce_zero_label')
    if loader.get('reduce_zero_label') not in (None, reduce_zero_label):
        return [f'{key}: the dataset has reduce_zero_label={reduce_zero_label} but its pipeline\'s LoadAnnotations '
                f'has reduce_zero_label={loader.reduce_zero_label}; mmseg stops at the first label map. Set both to '
                'the same value']
    # mmseg's mapping of file values (0..255) to labels: reduce_zero_label (0 -> 255, v -> v - 1), then label_map.
    mapping = np.arange(256)
    if reduce_zero_label:
        mapping = np.where((mapping == 0) | (mapping == 255), 255, mapping - 1)
    lookup = np.arange(256)
    for old, new in (dataset_type.get_label_map(classes) or {}).items():
        lookup[old] = new
    mapping = lookup[mapping]
    step = -(-len(label_files) // MAX_LABEL_MAPS)
    sample = label_files[::step]
    backend = loader.get('imdecode_backend', 'pillow')
    bad, colour, wide, seen = {}, [], [], set()
    for path in sample:
        try:
            with open(path, 'rb') as f:
                seg = mmcv.imfrombytes(f.read(), flag='unchanged', backend=backend).squeeze()
        except Exception:  # noqa: BLE001
            continue
        if seg.ndim == 3:
            colour.append(path)
        elif seg.ndim == 2 and seg.dtype != np.uint8 and seg.max() > 255:
            wide.append(path)
        elif seg.ndim == 2:
            present = np.flatnonzero(np.bincount(seg.astype(np.uint8).ravel(), minlength=256))
            seen.update(present.tolist())
            labels = mapping[present]
            out = present[(labels >= len(classes)) & (labels != ignore_index)]
            if out.size:
                bad[path] = out.tolist()
    read = f'of the {len(sample)} label maps read' + (f' (spread over all {len(label_files)})' if step > 1 else '')
    errors = []
    if colour:
        errors.append(f'{key}: {len(colour)} {read} are colour images, not one channel of class indices: '
                      f'{first_n(colour, 3)}. mmseg cannot train on them; convert the colours to class indices '
                      '(a grayscale or palette PNG)')
    if wide:
        errors.append(f'{key}: {len(wide)} {read} hold values above 255: {first_n(wide, 3)}. mmseg reads label '
                      'maps as 8 bits (300 becomes 44); remap the labels to 0..255')
    if bad:
        values = sorted({v for found in bad.values() for v in found})
        where = first_n((f'{osp.basename(path)} ({first_n(found)})' for path, found in bad.items()), 3)
        mapped = 'after reduce_zero_label (file value v is class v - 1, 0 is ignored)' if reduce_zero_label else \
            'with reduce_zero_label=False (file value v is class v)'
        hint = ''
        if not reduce_zero_label and 0 in seen and max(seen - {ignore_index}, default=0) == len(classes):
            hint = f'; if 0 marks unlabelled pixels, set {key}.reduce_zero_label=True (and in its LoadAnnotations)'
        errors.append(
            f'{key}: {len(bad)} {read} hold values that are none of the {len(classes)} classes {mapped} nor the '
            f'ignore index {ignore_index}: file values {first_n(values, 10)}, in {where}; files in '
            f'{osp.dirname(next(iter(bad)))}. mmseg would train on them: garbage targets on a CPU, a device-side '
            'assert on a GPU. Fix the classes (metainfo.classes and num_classes of every head) or '
            f'reduce_zero_label to match the files{hint}, or remap the labels in the files to 0..{len(classes) - 1} '
            f'(and {ignore_index} for pixels to ignore)')
    return errors


def ignore_index(cfg) -> int:
    """The label mmseg's decode head ignores (the last head's, for a cascade of decode heads)."""
    head = cfg.model.get('decode_head') or {}
    return (head[-1] if isinstance(head, list) else head).get('ignore_index', IGNORE_INDEX)


def _binary(scope: str, head: dict) -> bool:
    return scope == 'mmseg' and head.get('out_channels') == 1


def _head_fits(scope: str, head: dict, num_classes: int) -> bool:
    """mmseg's binary heads (out_channels=1, sigmoid) predict one of 2 classes, with num_classes 1 or 2."""
    return num_classes == 2 if _binary(scope, head) else head.num_classes == num_classes


def _dataset_class(scope: str, dataset: dict):
    registry = __import__(f'{scope}.registry', fromlist=['DATASETS']).DATASETS
    return registry.get(dataset.get('type', ''))


def _setting(dataset: dict, scope: str, name: str):
    """A dataset argument: from the config, else the default of the first class in the dataset type's MRO that
    declares it (subclasses such as mmseg's PascalVOCDataset pass the rest on as ``**kwargs``)."""
    if name in dataset:
        return dataset[name]
    for cls in _dataset_class(scope, dataset).__mro__:
        parameter = inspect.signature(cls.__init__).parameters.get(name)
        if parameter is not None:
            return parameter.default
    raise KeyError(f'{dataset.get("type")} takes no argument {name!r}')
