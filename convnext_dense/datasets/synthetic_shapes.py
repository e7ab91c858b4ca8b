"""A small synthetic COCO instance set and an ADE20K-layout segmentation set, so that every tool runs with no downloads.

Images show circles, squares and triangles, randomly rotated, on a textured grey background; each class has its own
range of hues (reds, greens, blues), so the demo models learn to tell the classes apart within minutes on a CPU.
:func:`write_synthetic_shapes` writes (the same bytes for the same seed)::

    OUT/coco/annotations/instances_{train,val}2017.json   COCO instances: polygon segmentation, bbox, area, iscrowd
    OUT/coco/{train,val}2017/*.jpg
    OUT/ade/ADEChallengeData2016/images/{training,validation}/*.jpg
    OUT/ade/ADEChallengeData2016/annotations/{training,validation}/*.png

The segmentation maps follow ADE20K's convention for ``reduce_zero_label=True``: 0 is unlabelled (a one-pixel seam
around every shape, ignored in training and evaluation), 1 the background, 2..4 circle, square and triangle.
"""
import json
import math
from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', ) + CLASSES  # png label i + 1 is class i after reduce_zero_label
MIN_SIDE, MAX_SIDE = 128, 192
MIN_SIZE, MAX_SIZE = 24, 64  # object diameter in pixels
MAX_OBJECTS = 4
CIRCLE_VERTICES = 24
HUE_STARTS, HUE_RANGE = (170, 50, 110), 30  # OpenCV hues (0..179) per class: reds, greens, blues


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A greyish texture (tinted, with smooth blotches, stripes and pixel noise): the shapes stand out by colour and
    edges, yet cannot be found by thresholding."""
    base = rng.uniform(60, 190) + rng.uniform(-15, 15, size=3)
    blotches = cv2.resize(rng.normal(0, 25, size=(6, 6)), (width, height), interpolation=cv2.INTER_CUBIC)
    angle, period = rng.uniform(0, math.pi), rng.uniform(6, 24)
    ys, xs = np.mgrid[0:height, 0:width]
    stripes = 12 * np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
    image = base + (blotches + stripes)[..., None] + rng.normal(0, 6, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def random_colour(rng: np.random.Generator, label: int) -> tuple:
    """A saturated BGR colour in the hue range of the class (reds, greens, blues): a cue that networks trained from
    random weights pick up within minutes, unlike the shapes themselves."""
    hue = rng.integers(0, HUE_RANGE) + HUE_STARTS[label]
    hsv = np.array([[[hue % 180, rng.integers(150, 256), rng.integers(130, 256)]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def shape_polygon(rng: np.random.Generator, label: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """Integer (x, y) vertices of a rotated circle (as a polygon), square or triangle inscribed in ``radius``."""
    num_vertices = (CIRCLE_VERTICES, 4, 3)[label]
    start = rng.uniform(0, 2 * math.pi)
    angles = start + np.arange(num_vertices) * 2 * math.pi / num_vertices
    points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
    return np.round(points).astype(np.int32)


def place_objects(rng: np.random.Generator, height: int, width: int) -> list:
    """1..MAX_OBJECTS shapes as (label, polygon), with boxes kept apart so no shape hides another."""
    objects, boxes = [], []
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        for _attempt in range(20):
            radius = rng.uniform(MIN_SIZE, MAX_SIZE) / 2
            cx, cy = rng.uniform(radius + 1, width - radius - 2), rng.uniform(radius + 1, height - radius - 2)
            label = int(rng.integers(len(CLASSES)))
            polygon = shape_polygon(rng, label, cx, cy, radius)
            x0, y0 = polygon.min(0) - 3
            x1, y1 = polygon.max(0) + 3
            if all(x1 < bx0 or bx1 < x0 or y1 < by0 or by1 < y0 for bx0, by0, bx1, by1 in boxes):
                boxes.append((x0, y0, x1, y1))
                objects.append((label, polygon))
                break
    return objects


def draw_image(rng: np.random.Generator) -> tuple:
    """(BGR image with side lengths multiples of 16, its objects as (label, polygon))."""
    height, width = (int(v) for v in rng.integers(MIN_SIDE // 16, MAX_SIDE // 16 + 1, size=2) * 16)
    image = textured_background(rng, height, width)
    objects = place_objects(rng, height, width)
    for label, polygon in objects:
        cv2.fillPoly(image, [polygon], random_colour(rng, label))
    return image, objects


def write_coco_split(rng: np.random.Generator, root: Path, split: str, num_images: int) -> Tuple[int, int]:
    """``num_images`` images of ``root/{split}2017`` and their COCO instances file; (images, instances) written."""
    from pycocotools import mask as mask_utils  # the area of each polygon as COCO's evaluation rasterises it
    image_dir = root / f'{split}2017'
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image, objects = draw_image(rng)
        height, width = image.shape[:2]
        file_name = f'{image_id:012d}.jpg'
        cv2.imwrite(str(image_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
        for label, polygon in objects:
            flat = [float(v) for v in polygon.reshape(-1)]
            area = float(mask_utils.area(mask_utils.frPyObjects([flat], height, width)).sum())
            (x0, y0), (x1, y1) = polygon.min(0), polygon.max(0)
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id, category_id=label + 1,
                                    segmentation=[flat], area=area, iscrowd=0,
                                    bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)]))
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(CLASSES)]
    dataset = dict(info=dict(description=f'convnext-dense synthetic shapes, {split}'), licenses=[],
                   images=images, annotations=annotations, categories=categories)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    (root / 'annotations' / f'instances_{split}2017.json').write_text(json.dumps(dataset))
    return len(images), len(annotations)


def write_ade_split(rng: np.random.Generator, root: Path, split: str, num_images: int) -> None:
    """``num_images`` images and label maps of ADE20K's ``training`` or ``validation`` split (``split`` train / val)
    under ``root``."""
    ade_split, prefix = dict(train=('training', 'ADE_train'), val=('validation', 'ADE_val'))[split]
    image_dir, label_dir = root / 'images' / ade_split, root / 'annotations' / ade_split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    for index in range(1, num_images + 1):
        image, objects = draw_image(rng)
        labels = np.ones(image.shape[:2], dtype=np.uint8)
        for label, polygon in objects:
            cv2.fillPoly(labels, [polygon], label + 2)
            cv2.polylines(labels, [polygon], isClosed=True, color=0, thickness=1)
        cv2.imwrite(str(image_dir / f'{prefix}_{index:08d}.jpg'), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(label_dir / f'{prefix}_{index:08d}.png'), labels)


def write_synthetic_shapes(out: Path, seed: int = 0, num_train: int = 80, num_val: int = 20) -> Dict[str, tuple]:
    """Both data sets under ``out`` (see the module's docstring); the COCO set's (images, instances) per split."""
    # One generator per split, so changing num_val leaves the training images as they were.
    seeds = np.random.SeedSequence(seed).spawn(4)
    counts = {split: write_coco_split(np.random.default_rng(split_seed), out / 'coco', split, num)
              for split, split_seed, num in (('train', seeds[0], num_train), ('val', seeds[1], num_val))}
    for split, split_seed, num in (('train', seeds[2], num_train), ('val', seeds[3], num_val)):
        write_ade_split(np.random.default_rng(split_seed), out / 'ade' / 'ADEChallengeData2016', split, num)
    return counts
