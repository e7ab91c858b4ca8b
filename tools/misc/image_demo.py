"""Draw what a model predicts on images, to see a checkpoint at work.

mmdet configs: boxes, masks, class names and scores, drawn by mmdet's DetLocalVisualizer. mmseg configs: the predicted
classes over the image, drawn by mmseg's SegLocalVisualizer, with a legend of the classes present (and the share of
the image each covers) below it, as mmseg's visualizer has none.

    python tools/misc/image_demo.py CONFIG CHECKPOINT IMAGE_OR_FOLDER [...] --out-dir DIR [--score-thr 0.3]
                                    [--device cpu]

One PNG per image (named after it) in --out-dir; each path is printed on a line of its own. Checkpoints from
tools/train.py load weights-only, as everywhere in this package. CHECKPOINT may be an .onnx graph of
tools/deployment/export_onnx.py, run by onnxruntime.
"""
import argparse
import sys
from pathlib import Path

from convnext_dense import CheckpointError  # the import registers the backbone; mmengine reads checkpoints weights-only
from convnext_dense.apis.inference import load_model, predict, read_rgb
from convnext_dense.apis.runner_setup import (
    SetupError,
    add_cfg_options_arg,
    add_device_arg,
    load_config,
    require_checkpoint,
)
from convnext_dense.visualization.prediction_pictures import (
    build_visualizer,
    draw_prediction,
    find_images,
    write_picture,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('checkpoint', help='checkpoint file (e.g. from tools/train.py), or an .onnx graph')
    parser.add_argument('images', nargs='+', metavar='IMAGE_OR_FOLDER',
                        help='image files, or folders whose images (not recursively) are all drawn')
    parser.add_argument('--out-dir', required=True, help='folder for the PNGs')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections: draw those scoring above this (default 0.3)')
    add_device_arg(parser)
    add_cfg_options_arg(parser)
    return parser.parse_args()


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
        out_file = out_dir / f'{image_path.stem}.png'
        write_picture(draw_prediction(visualizer, cfg.default_scope, image, result, args.score_thr), out_file)
        print(out_file, flush=True)


if __name__ == '__main__':
    main()
