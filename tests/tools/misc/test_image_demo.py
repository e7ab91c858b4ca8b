"""tools/misc/image_demo.py draws what a checkpoint predicts: mmdet's boxes and masks over the image, mmseg's class
overlay with a legend below it, one PNG per image; and names what is missing instead of failing later
(tests/visualization/test_prediction_pictures.py tests the drawing and the image search on their own)."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DET_CONFIG, SEG_CONFIG, save_random_checkpoint

REPO = Path(__file__).resolve().parents[3]
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_WAIT_POLICY='PASSIVE')


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    """The synthetic data set (4 validation images each) and a random checkpoint per demo model."""
    root = tmp_path_factory.mktemp('image_demo')
    subprocess.run([sys.executable, str(REPO / 'tools' / 'misc' / 'make_demo_data.py'), '--out', str(root / 'data'),
                    '--num-train', '1', '--num-val', '4'], check=True, capture_output=True)
    save_random_checkpoint(DET_CONFIG, root / 'mask_rcnn.pth')
    save_random_checkpoint(SEG_CONFIG, root / 'upernet.pth')
    return root


def image_demo(*args, cwd):
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'misc' / 'image_demo.py'), *map(str, args)], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=300)


def written_pngs(result, count: int) -> list:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    paths = [Path(line) for line in result.stdout.splitlines() if line.endswith('.png')]
    assert len(paths) == count, result.stdout
    return paths


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f'{path} is not a readable image'
    return image[..., ::-1].astype(np.int16)


@pytest.mark.slow
def test_detections_are_drawn_over_the_image(workspace):
    val_dir = workspace / 'data' / 'coco' / 'val2017'
    # A random model scores every class about equally (~0.25): with --score-thr 0, its boxes are drawn.
    result = image_demo(DET_CONFIG, workspace / 'mask_rcnn.pth', val_dir, '--out-dir', 'det', '--score-thr', '0',
                        cwd=workspace)
    pngs = written_pngs(result, 4)
    for png, image_path in zip(pngs, sorted(val_dir.glob('*.jpg'))):
        assert png.stem == image_path.stem
        drawn, image = read_rgb(workspace / png), read_rgb(image_path)
        assert drawn.shape == image.shape
        changed = (np.abs(drawn - image).max(-1) > 30).mean()
        assert changed > 0.01, f'{png}: only {changed:.2%} of the pixels show boxes or masks'

    # Scores never exceed 1: nothing is drawn, and the picture is the image itself, pixel for pixel.
    result = image_demo(DET_CONFIG, workspace / 'mask_rcnn.pth', val_dir / '000000000001.jpg', '--out-dir', 'none',
                        '--score-thr', '1', cwd=workspace)
    png, = written_pngs(result, 1)
    assert np.array_equal(read_rgb(workspace / png), read_rgb(val_dir / '000000000001.jpg'))


@pytest.mark.slow
def test_segmentation_is_a_class_overlay_with_a_legend(workspace):
    val_dir = workspace / 'data' / 'ade' / 'ADEChallengeData2016' / 'images' / 'validation'
    images = sorted(val_dir.glob('*.jpg'))[:2]
    result = image_demo(SEG_CONFIG, workspace / 'upernet.pth', *images, '--out-dir', 'seg', cwd=workspace)
    palette = np.array([(120, 120, 120), (220, 20, 60), (0, 128, 0), (0, 0, 230)])  # the config's
    for png, image_path in zip(written_pngs(result, 2), images):
        drawn, image = read_rgb(workspace / png), read_rgb(image_path)
        height, width = image.shape[:2]
        assert drawn.shape[1] == width and drawn.shape[0] > height  # the legend strip below the image
        overlay, legend = drawn[:height], drawn[height:]
        # Every pixel is the image blended half and half with the colour of one of the classes.
        blends = (image[None] + palette[:, None, None]) // 2  # classes x H x W x 3
        errors = np.abs(blends - overlay[None]).max(-1)
        assert errors.min(0).max() <= 1
        assert (np.abs(overlay - image).max(-1) > 10).mean() > 0.5  # an overlay, not the raw image
        # The legend shows a swatch (a solid square; text strokes are thin) in the exact colour of every class
        # predicted, and of no other class.
        predicted = np.unique(errors.argmin(0))
        for label in range(len(palette)):
            in_colour = (legend == palette[label]).all(-1).astype(np.uint8)
            has_swatch = cv2.erode(in_colour, np.ones((5, 5), np.uint8)).any()
            assert has_swatch == (label in predicted), (png, label, predicted)


@pytest.mark.slow
def test_command_line_errors_exit_with_the_message(tmp_path):
    result = image_demo(DET_CONFIG, 'no_such.pth', 'img.jpg', '--out-dir', 'out', cwd=tmp_path)
    assert result.returncode == 1
    assert 'error: checkpoint not found: no_such.pth' in result.stderr
    assert 'Traceback' not in result.stderr
