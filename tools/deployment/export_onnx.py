"""Export a trained segmentor, detector or backbone to ONNX (standard ops only), checked against PyTorch.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out model.onnx [--shape H W] [--dynamic] [--fp16]
                                           [--opset N] [--labels] [--backbone-only] [--check-image IMAGE] [--probe]
                                           [--cfg-options ...]

UperNet: image -> class logits at the input size (--labels: the label map). Mask R-CNN / Cascade Mask R-CNN: image ->
boxes, scores, labels, masks. --backbone-only: image -> the backbone's feature maps. Every graph takes a float32
(1, 3, H, W) BGR image, 0-255, after the test pipeline's resize; normalisation and padding are inside. The model's
metadata (classes, input format, output layout) travels in the file. Before reporting success the export runs the graph
in onnxruntime and prints its largest difference from PyTorch (at a second size too with --dynamic).
Then: tools/test.py CONFIG model.onnx evaluates it, tools/misc/image_demo.py CONFIG model.onnx IMAGES draws it.

--fp16 keeps LayerNormalization, ConvNeXt V2's GRN, RoiAlign and NonMaxSuppression in fp32; --probe prints how close
each LayerNorm / GRN input and each fp16 tensor comes to the fp16 range on this input size (a CPU runs fp16 ops in
fp32, so it cannot show an overflow itself).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from convnext_dense import CheckpointError  # the import registers the backbone; checkpoints load weights-only
from convnext_dense.apis.export import export_model, export_shape
from convnext_dense.apis.inference import load_model, read_rgb
from convnext_dense.apis.runner_setup import SetupError, add_cfg_options_arg, load_config, require_checkpoint


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('checkpoint', help='checkpoint file (e.g. from tools/train.py, or a released model)')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size traced (without --dynamic the largest the graph takes; smaller images are "
                             "padded); default: the config's sliding-window crop for segmentors that slide, else the "
                             "largest image its test resize makes, padded to the model's size divisor")
    parser.add_argument('--dynamic', action='store_true', help='accept images of any size')
    parser.add_argument('--fp16', action='store_true', help='half precision, the fragile ops kept in fp32')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset, 17..20 (default 17)')
    parser.add_argument('--labels', action='store_true', help='segmentors: output the label map instead of logits')
    parser.add_argument('--backbone-only', action='store_true', help='export the backbone alone: image -> feature maps')
    parser.add_argument('--check-image', help='compare ONNX and PyTorch on this image (resized) instead of random '
                                              'pixels, e.g. so that a trained detector finds something')
    parser.add_argument('--probe', action='store_true', help='print the fp16 range probe at the export size')
    parser.add_argument('--provider', default='CPUExecutionProvider',
                        help='onnxruntime execution provider the parity check runs on, e.g. CUDAExecutionProvider '
                             '(onnxruntime-gpu); default CPUExecutionProvider')
    add_cfg_options_arg(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        cfg = load_config(args.config, args.cfg_options)
        require_checkpoint(args.checkpoint)
        check_image = np.ascontiguousarray(read_rgb(args.check_image)[..., ::-1]) if args.check_image else None
        shape = export_shape(cfg, args.shape)
        model = load_model(cfg, args.checkpoint, 'cpu')
        result = export_model(model, args.out, shape, provider=args.provider, dynamic=args.dynamic, fp16=args.fp16,
                              opset=args.opset, backbone_only=args.backbone_only, labels=args.labels,
                              config=args.config, check_image=check_image)
    except (SetupError, CheckpointError) as exc:
        sys.exit(f'error: {exc}')
    if args.shape is None:
        print(f'shape {shape[0]}x{shape[1]}: the largest input the test pipeline makes, padded to the model\'s size '
              'divisor' + ('' if args.dynamic else '; smaller images are padded to it at run time'))
    print('\n'.join(result.summary()))
    if args.fp16:
        from convnext_dense.deploy.fp16 import trtexec_command
        command_file = Path(args.out).with_suffix('.trtexec.sh')
        command_file.write_text(trtexec_command(args.out, result.fp32_nodes, shape, args.dynamic) + '\n')
        print(f'TensorRT with the same {len(result.fp32_nodes)} nodes in fp32: bash {command_file}')
    if args.probe:
        from convnext_dense.deploy.export import check_input
        from convnext_dense.deploy.fp16 import probe_range
        report = probe_range(result.fp32_graph, {'image': check_input(shape, check_image)})
        print(f'fp16 range probe at {shape[0]}x{shape[1]} (fp32 graph):')
        print('\n'.join('  ' + line for line in report.lines()))


if __name__ == '__main__':
    main()
