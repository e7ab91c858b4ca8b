"""tools/misc/make_demo_data.py writes the same valid data sets for the same seed: COCO instances whose masks fill their
boxes, and ADE20K-layout label maps that mmseg reads with reduce_zero_label."""
import filecmp
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

REPO = Path(__file__).resolve().parents[3]
NUM_TRAIN, NUM_VAL = 6, 3


def make(out: Path, seed: int = 0) -> Path:
    subprocess.run([sys.executable, str(REPO / 'tools' / 'misc' / 'make_demo_data.py'), '--out', str(out), '--seed',
                    str(seed), '--num-train', str(NUM_TRAIN), '--num-val', str(NUM_VAL)], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    return make(tmp_path_factory.mktemp('demo'))


def all_files(root: Path) -> list:
    return sorted(p.relative_to(root) for p in root.rglob('*') if p.is_file())


def test_same_seed_same_bytes_other_seed_other_images(demo, tmp_path):
    again = make(tmp_path / 'again')
    assert all_files(demo) == all_files(again)
    _, mismatch, errors = filecmp.cmpfiles(demo, again, [str(p) for p in all_files(demo)], shallow=False)
    assert not mismatch and not errors
    other = make(tmp_path / 'other', seed=1)
    image = 'coco/train2017/000000000001.jpg'
    assert (demo / image).read_bytes() != (other / image).read_bytes()


@pytest.mark.parametrize('split, num_images', [('train', NUM_TRAIN), ('val', NUM_VAL)])
def test_coco_instances_are_valid(demo, split, num_images):
    coco = COCO(str(demo / 'coco' / 'annotations' / f'instances_{split}2017.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == ['circle', 'square', 'triangle']
    assert len(coco.getImgIds()) == num_images
    assert len(coco.getAnnIds()) >= num_images  # at least one shape per image
    for image_info in coco.loadImgs(coco.getImgIds()):
        image = cv2.imread(str(demo / 'coco' / f'{split}2017' / image_info['file_name']))
        assert image.shape == (image_info['height'], image_info['width'], 3)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_info['id'])):
            assert ann['iscrowd'] == 0 and ann['category_id'] in (1, 2, 3)
            mask = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann['bbox']
            # The rasterised polygon spans its box (to a pixel) and its area is the annotated area.
            assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
            assert abs(xs.max() + 1 - (x + w)) <= 1 and abs(ys.max() + 1 - (y + h)) <= 1
            assert mask.sum() == pytest.approx(ann['area'], rel=0.02)
            # The shape is drawn there: inside the mask the image differs from the background around the box.
            ring = np.zeros_like(mask)
            ring[max(int(y) - 3, 0):int(y + h) + 4, max(int(x) - 3, 0):int(x + w) + 4] = True
            ring[int(y):int(y + h) + 1, int(x):int(x + w) + 1] = False
            inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            assert np.abs(image[inner].mean(0) - image[ring].mean(0)).max() > 10
            # In the hue range of its class: reds for circles, greens for squares, blues for triangles.
            colour = np.median(image[inner], axis=0).astype(np.uint8)[None, None]
            hue = int(cv2.cvtColor(colour, cv2.COLOR_BGR2HSV)[0, 0, 0])
            start = (170, 50, 110)[ann['category_id'] - 1]
            assert (hue - start + 5) % 180 <= 30 + 10, (ann['category_id'], hue)


def test_boxes_of_an_image_do_not_overlap(demo):
    coco = COCO(str(demo / 'coco' / 'annotations' / 'instances_train2017.json'))
    for image_id in coco.getImgIds():
        boxes = [a['bbox'] for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))]
        for i, (x0, y0, w0, h0) in enumerate(boxes):
            for x1, y1, w1, h1 in boxes[i + 1:]:
                assert x0 + w0 < x1 or x1 + w1 < x0 or y0 + h0 < y1 or y1 + h1 < y0


@pytest.mark.parametrize('split, prefix, num_images', [('training', 'ADE_train', NUM_TRAIN),
                                                       ('validation', 'ADE_val', NUM_VAL)])
def test_ade_layout_and_label_range(demo, split, prefix, num_images):
    root = demo / 'ade' / 'ADEChallengeData2016'
    images = sorted((root / 'images' / split).glob('*.jpg'))
    labels = sorted((root / 'annotations' / split).glob('*.png'))
    assert [p.stem for p in images] == [p.stem for p in labels] == [f'{prefix}_{i:08d}' for i in
                                                                     range(1, num_images + 1)]
    for image_path, label_path in zip(images, labels):
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint8 and label.shape == cv2.imread(str(image_path)).shape[:2]
        values = set(np.unique(label).tolist())
        assert {0, 1} <= values <= {0, 1, 2, 3, 4} and len(values) >= 3  # seams, background and a shape


def test_mmseg_reads_it_with_reduce_zero_label(demo):
    from mmseg.datasets import BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations
    dataset = BaseSegDataset(data_root=str(demo / 'ade' / 'ADEChallengeData2016'), img_suffix='.jpg',
                             seg_map_suffix='.png', reduce_zero_label=True,
                             data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
                             metainfo=dict(classes=('background', 'circle', 'square', 'triangle')))
    assert len(dataset) == NUM_VAL
    results = LoadAnnotations()(dataset[0])  # reduce_zero_label comes from the dataset
    assert set(np.unique(results['gt_seg_map']).tolist()) <= {0, 1, 2, 3, 255}
    raw = cv2.imread(results['seg_map_path'], cv2.IMREAD_UNCHANGED)
    assert np.array_equal(results['gt_seg_map'] == 255, raw == 0)


def test_categories_match_the_demo_configs(demo):
    from mmengine.config import Config

    import convnext_dense  # noqa: F401  mmdet::/mmseg:: base configs
    categories = json.loads((demo / 'coco' / 'annotations' / 'instances_val2017.json').read_text())['categories']
    for name in ('mask_rcnn', 'cascade_rcnn'):
        cfg = Config.fromfile(str(REPO / 'configs' / 'demo' / f'{name}_convnext_atto_demo.py'))
        assert list(cfg.metainfo['classes']) == [c['name'] for c in categories]
    cfg = Config.fromfile(str(REPO / 'configs' / 'demo' / 'upernet_convnext_atto_demo.py'))
    assert list(cfg.metainfo['classes']) == ['background'] + [c['name'] for c in categories]
