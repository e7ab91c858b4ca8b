"""convnext_dense.visualization.prediction_pictures: the images named on the command line are found (or what is missing
is named), detections are drawn by mmdet's visualizer and segmentations by mmseg's with a legend of the classes
present, in their palette colours."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from convnext_dense.apis.inference import read_rgb
from convnext_dense.apis.runner_setup import SetupError, require_checkpoint
from convnext_dense.visualization.prediction_pictures import (
    SEG_OPACITY,
    add_legend,
    build_visualizer,
    draw_prediction,
    find_images,
    write_picture,
)

CLASSES = ('background', 'circle', 'square', 'triangle')
PALETTE = [(120, 120, 120), (220, 20, 60), (0, 128, 0), (0, 0, 230)]


def fake_model(scope: str):
    """What build_visualizer reads of a model: its classes, palette and config scope."""
    return SimpleNamespace(dataset_meta=dict(classes=CLASSES, palette=PALETTE),
                           cfg=SimpleNamespace(default_scope=scope))


def has_swatch(picture: np.ndarray, colour) -> bool:
    """A solid square of ``colour`` (text strokes are thinner than the 5 x 5 erosion)."""
    in_colour = (picture == np.array(colour)).all(-1).astype(np.uint8)
    return bool(cv2.erode(in_colour, np.ones((5, 5), np.uint8)).any())


def test_missing_inputs_are_named(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('not an image')
    with pytest.raises(SetupError, match=r'no images in folder .*empty'):
        find_images([tmp_path / 'empty'])
    with pytest.raises(SetupError, match=r'image not found: .*missing\.jpg'):
        find_images([tmp_path / 'missing.jpg'])
    (tmp_path / 'broken.jpg').write_bytes(b'not a jpeg')
    with pytest.raises(SetupError, match=r'cannot read image .*broken\.jpg'):
        read_rgb(tmp_path / 'broken.jpg')
    with pytest.raises(SetupError, match=r'checkpoint not found: .*missing\.pth'):
        require_checkpoint(str(tmp_path / 'missing.pth'))
    # Files and folders mix, folders in name order, other files in them left out.
    cv2.imwrite(str(tmp_path / 'empty' / 'b.png'), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'empty' / 'a.JPG'), np.zeros((4, 4, 3), np.uint8))
    assert find_images([tmp_path / 'broken.jpg', tmp_path / 'empty']) == [
        tmp_path / 'broken.jpg', tmp_path / 'empty' / 'a.JPG', tmp_path / 'empty' / 'b.png']


def test_legend_has_a_swatch_per_entry_in_rows_as_wide_as_the_image():
    image = np.zeros((40, 160, 3), np.uint8)
    entries = [(name, colour, share) for name, colour, share in zip(CLASSES, PALETTE, (0.6, 0.3, 0.098, 0.002))]
    picture = add_legend(image, entries)
    assert picture.shape[1] == 160 and picture.shape[0] > 40
    assert np.array_equal(picture[:40], image)
    legend = picture[40:]
    assert all(has_swatch(legend, colour) for colour in PALETTE)
    # Four entries do not fit in one row of 160 pixels: the strip grows by rows instead of widening.
    one_row = add_legend(image, entries[:1])
    assert legend.shape[0] > one_row.shape[0] - 40
    assert add_legend(image, []).shape[1] == 160


def test_segmentation_is_blended_over_the_image_with_a_legend_of_the_classes_present(tmp_path):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    image = np.full((32, 48, 3), 200, np.uint8)
    labels = torch.zeros(1, 32, 48, dtype=torch.long)
    labels[:, 8:24, 8:24] = 2  # a square on the background; no circles or triangles
    result = SegDataSample(pred_sem_seg=PixelData(data=labels))
    visualizer = build_visualizer(fake_model('mmseg'))
    picture = draw_prediction(visualizer, 'mmseg', image, result, score_thr=0.3)
    overlay, legend = picture[:32].astype(int), picture[32:]
    expected = (1 - SEG_OPACITY) * image[0, 0] + SEG_OPACITY * np.array([PALETTE[2], PALETTE[0]])
    assert np.abs(overlay[16, 16] - expected[0]).max() <= 1 and np.abs(overlay[0, 0] - expected[1]).max() <= 1
    assert [has_swatch(legend, colour) for colour in PALETTE] == [True, False, True, False]
    write_picture(picture, tmp_path / 'out' / 'seg.png')
    assert np.array_equal(cv2.imread(str(tmp_path / 'out' / 'seg.png'))[..., ::-1], picture)


def test_detections_above_the_score_threshold_are_drawn():
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    image = np.full((64, 64, 3), 200, np.uint8)
    result = DetDataSample(metainfo=dict(img_shape=(64, 64)))
    result.pred_instances = InstanceData(bboxes=torch.tensor([[8., 8., 40., 40.]]), labels=torch.tensor([1]),
                                         scores=torch.tensor([0.5]))
    visualizer = build_visualizer(fake_model('mmdet'))
    drawn = draw_prediction(visualizer, 'mmdet', image, result, score_thr=0.3)
    assert drawn.shape == image.shape and (np.abs(drawn.astype(int) - image).max(-1) > 30).any()
    assert np.array_equal(draw_prediction(visualizer, 'mmdet', image, result, score_thr=0.6), image)
