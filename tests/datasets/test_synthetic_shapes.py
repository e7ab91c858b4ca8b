"""convnext_dense.datasets.synthetic_shapes: shapes of each class with their own vertex count and hue range, kept apart
within the image, and data sets that depend on the seed alone (tests/tools/misc/test_make_demo_data.py checks the
files through pycocotools and mmseg)."""
import json

import cv2
import numpy as np

from convnext_dense.datasets.synthetic_shapes import (
    CLASSES,
    HUE_RANGE,
    HUE_STARTS,
    MAX_OBJECTS,
    MAX_SIDE,
    MIN_SIDE,
    draw_image,
    place_objects,
    random_colour,
    shape_polygon,
    write_synthetic_shapes,
)


def test_polygons_have_the_vertices_of_their_class_on_the_circle():
    rng = np.random.default_rng(0)
    for label, vertices in enumerate((24, 4, 3)):
        polygon = shape_polygon(rng, label, 50.0, 40.0, 20.0)
        assert polygon.shape == (vertices, 2) and polygon.dtype == np.int32
        radii = np.hypot(polygon[:, 0] - 50, polygon[:, 1] - 40)
        assert np.all(np.abs(radii - 20) <= 1)


def test_colours_are_in_the_hue_range_of_their_class():
    rng = np.random.default_rng(0)
    for label in range(len(CLASSES)):
        for _ in range(20):
            bgr = np.array([[random_colour(rng, label)]], dtype=np.uint8)
            hue = int(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[0, 0, 0])
            assert (hue - HUE_STARTS[label]) % 180 <= HUE_RANGE, (label, hue)


def test_objects_lie_inside_the_image_and_apart():
    rng = np.random.default_rng(0)
    for _ in range(20):
        objects = place_objects(rng, 128, 160)
        assert 1 <= len(objects) <= MAX_OBJECTS
        boxes = [(*polygon.min(0), *polygon.max(0)) for _, polygon in objects]
        assert all(x0 >= 0 and y0 >= 0 and x1 < 160 and y1 < 128 for x0, y0, x1, y1 in boxes)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            for bx0, by0, bx1, by1 in boxes[i + 1:]:
                assert x1 < bx0 or bx1 < x0 or y1 < by0 or by1 < y0


def test_image_sides_are_multiples_of_16_in_range():
    rng = np.random.default_rng(0)
    for _ in range(10):
        image, objects = draw_image(rng)
        assert image.dtype == np.uint8 and image.shape[2] == 3 and objects
        assert all(side % 16 == 0 and MIN_SIDE <= side <= MAX_SIDE for side in image.shape[:2])


def test_the_seed_decides_the_data_and_the_counts_are_those_written(tmp_path):
    counts = write_synthetic_shapes(tmp_path / 'a', seed=3, num_train=2, num_val=1)
    write_synthetic_shapes(tmp_path / 'b', seed=3, num_train=2, num_val=1)
    files = sorted(p.relative_to(tmp_path / 'a') for p in (tmp_path / 'a').rglob('*') if p.is_file())
    assert len(files) == 2 + 3 + 2 * 3  # COCO: 2 annotation files and 3 images; ADE: 3 images and 3 label maps
    assert all((tmp_path / 'a' / f).read_bytes() == (tmp_path / 'b' / f).read_bytes() for f in files)
    for split, num_images in (('train', 2), ('val', 1)):
        dataset = json.loads((tmp_path / 'a' / 'coco' / 'annotations' / f'instances_{split}2017.json').read_text())
        assert len(dataset['images']) == num_images
        assert counts[split] == (num_images, len(dataset['annotations']))
