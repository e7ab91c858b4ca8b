"""Pictures of what a model predicts on an image.

Detectors: boxes, masks, class names and scores, drawn by mmdet's ``DetLocalVisualizer``. Segmentors: the predicted
classes blended over the image by mmseg's ``SegLocalVisualizer``, with a legend of the classes present (and the share
of the image each covers) below it, as mmseg's visualizer has none.
"""
from pathlib import Path
from typing import List, Sequence

import cv2
import mmcv
import numpy as np

from ..apis.runner_setup import SetupError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
SEG_OPACITY = 0.5  # the image stays visible under the class colours


def find_images(paths) -> List[Path]:
    """The image files named, and those in the folders named, in order; an error for anything else."""
    images = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise SetupError(f'no images in folder {path} (looked for {", ".join(IMAGE_SUFFIXES)} files, not in '
                                 'subfolders); name an image file or a folder that holds images')
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise SetupError(f'image not found: {path}; name an image file or a folder of images')
    return images


def build_visualizer(model):
    """mmdet's or mmseg's local visualizer, after the model's config scope, with the model's classes and palette."""
    meta = dict(classes=model.dataset_meta['classes'], palette=model.dataset_meta['palette'])
    if model.cfg.default_scope == 'mmdet':
        from mmdet.visualization import DetLocalVisualizer
        visualizer = DetLocalVisualizer(name='image_demo')
    else:
        from mmseg.visualization import SegLocalVisualizer
        visualizer = SegLocalVisualizer(name='image_demo', alpha=SEG_OPACITY)
    visualizer.dataset_meta = meta
    return visualizer


def draw_prediction(visualizer, scope: str, image: np.ndarray, result, score_thr: float) -> np.ndarray:
    """The RGB picture of ``result`` over ``image`` (RGB): detections for the ``'mmdet'`` config scope (those scoring
    above ``score_thr``), else a segmentation with its legend."""
    if scope == 'mmdet':
        return draw_detections(visualizer, image, result, score_thr)
    return draw_segmentation(visualizer, image, result)


def draw_detections(visualizer, image: np.ndarray, result, score_thr: float) -> np.ndarray:
    visualizer.add_datasample('prediction', image, result, draw_gt=False, pred_score_thr=score_thr)
    return visualizer.get_image()


def draw_segmentation(visualizer, image: np.ndarray, result) -> np.ndarray:
    # mmseg's in-image labels sit at each class's centre and cover small images; the legend below replaces them.
    visualizer.add_datasample('prediction', image, result, draw_gt=False, with_labels=False)
    labels = result.pred_sem_seg.data.cpu().numpy()[0]
    ids, counts = np.unique(labels, return_counts=True)
    classes, palette = visualizer.dataset_meta['classes'], visualizer.dataset_meta['palette']
    entries = [(classes[i], palette[i], count / labels.size)
               for i, count in sorted(zip(ids, counts), key=lambda pair: -pair[1]) if i < len(classes)]
    return add_legend(visualizer.get_image(), entries)


def add_legend(image: np.ndarray, entries: Sequence[tuple]) -> np.ndarray:
    """``image`` (RGB) with a white strip below it: a colour swatch, class name and image share per
    ``(name, colour, share)`` entry, in rows as wide as the image."""
    width = image.shape[1]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, width / 1200)
    thickness = 1 if scale < 0.8 else 2
    text_height = cv2.getTextSize('Ag', font, scale, thickness)[0][1]
    margin, swatch = text_height // 2 + 2, text_height + 4
    row_height = swatch + margin
    placed, x, y = [], margin, margin
    for name, colour, share in entries:
        text = f'{name} {share:.0%}' if share >= 0.005 else f'{name} <1%'
        entry_width = swatch + margin // 2 + cv2.getTextSize(text, font, scale, thickness)[0][0]
        if x > margin and x + entry_width > width - margin:
            x, y = margin, y + row_height
        placed.append((x, y, text, colour))
        x += entry_width + 2 * margin
    strip = np.full((y + row_height, width, 3), 255, dtype=np.uint8)
    for x, y, text, colour in placed:
        cv2.rectangle(strip, (x, y), (x + swatch, y + swatch), tuple(int(c) for c in colour), -1)
        cv2.rectangle(strip, (x, y), (x + swatch, y + swatch), (0, 0, 0), 1)
        cv2.putText(strip, text, (x + swatch + margin // 2, y + swatch - 2), font, scale, (0, 0, 0), thickness,
                    cv2.LINE_AA)
    return np.concatenate([image, strip], axis=0)


def write_picture(picture: np.ndarray, path: Path) -> None:
    """Write an RGB picture (as the visualizers return them) to ``path``, creating its folder."""
    mmcv.imwrite(mmcv.rgb2bgr(picture), str(path))
