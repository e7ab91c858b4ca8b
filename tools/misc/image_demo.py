"""Draw what a model predicts on images, to see a checkpoint at work.

mmdet configs: boxes, masks, class names and scores, drawn by mmdet's DetLocalVisualizer. mmseg configs: the predicted
classes over the image, drawn by mmseg's SegLocalVisualizer, with a legend of the classes present (and the share of
the image each covers) below it, as mmseg's visualizer has none.

    python tools/misc/image_demo.py CONFIG CHECKPOINT IMAGE_OR_FOLDER [...] --out-dir DIR [--score-thr 0.3] [--device cpu]

One PNG per image (named after it) in --out-dir; each path is printed on a line of its own. Checkpoints from
tools/train.py load weights-only, as everywhere in this package. CHECKPOINT may be an .onnx graph of
tools/deployment/export_onnx.py, run by onnxruntime.
"""
import argparse
import sys
from pathlib import Path

import cv2
import mmcv
import numpy as np
import torch

from convnext_dense import CheckpointError  # the import registers the backbone; mmengine reads checkpoints weights-only
from convnext_dense.apis.inference import load_model, predict, read_rgb
from convnext_dense.apis.runner_setup import SetupError, add_cfg_options_arg, load_config, require_checkpoint

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
SEG_OPACITY = 0.5  # the image stays visible under the class colours


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('checkpoint', help='checkpoint file (e.g. from tools/train.py), or an .onnx graph')
    parser.add_argument('images', nargs='+', metavar='IMAGE_OR_FOLDER',
                        help='image files, or folders whose images (not recursively) are all drawn')
    parser.add_argument('--out-dir', required=True, help='folder for the PNGs')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections: draw those scoring above this (default 0.3)')
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu',
                        help='device to run the model on (default: cuda:0 if there is a GPU, else cpu)')
    add_cfg_options_arg(parser)
    return parser.parse_args()


def find_images(paths) -> list:
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


def add_legend(image: np.ndarray, entries) -> np.ndarray:
    """``image`` (RGB) with a white strip below it: a colour swatch, class name and image share per entry, in rows
    as wide as the image."""
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


def build_visualizer(model):
    meta = dict(classes=model.dataset_meta['classes'], palette=model.dataset_meta['palette'])
    if model.cfg.default_scope == 'mmdet':
        from mmdet.visualization import DetLocalVisualizer
        visualizer = DetLocalVisualizer(name='image_demo')
    else:
        from mmseg.visualization import SegLocalVisualizer
        visualizer = SegLocalVisualizer(name='image_demo', alpha=SEG_OPACITY)
    visualizer.dataset_meta = meta
    return visualizer


def main():
    args = parse_args()
    try:
        cfg = load_config(args.config, args.cfg_options)
        require_checkpoint(args.checkpoint)
        images = find_images(args.images)
    except SetupError as exc:
        sys.exit(f'error: {exc}')
    try:
        model = load_model(cfg, args.checkpoint, args.device)
    except (CheckpointError, SetupError) as exc:
        sys.exit(f'error: {exc}')
    visualizer = build_visualizer(model)
    out_dir = Path(args.out_dir)
    for image_path in images:
        try:
            image = read_rgb(image_path)
        except SetupError as exc:
            sys.exit(f'error: {exc}')
        result = predict(model, image_path)
        if cfg.default_scope == 'mmdet':
            drawn = draw_detections(visualizer, image, result, args.score_thr)
        else:
            drawn = draw_segmentation(visualizer, image, result)
        out_file = out_dir / f'{image_path.stem}.png'
        mmcv.imwrite(mmcv.rgb2bgr(drawn), str(out_file))
        print(out_file, flush=True)


if __name__ == '__main__':
    main()
