r"""Inference FPS of mmdet/mmseg configs and forward/backward time of their backbones alone, side by side.

Each config runs in its own process, with random weights (SyncBN as BN):
- inference: batch 1, ``model.test_step`` (data preprocessor, predict, post-processing) on a synthetic image in eval
  mode, --warmup untimed then --iters timed calls; FPS = 1 / median.
- backbone: the config's backbone alone on the batch the detector/segmentor would feed it (--batch-size synthetic
  images through the model's data preprocessor, so padded to its size divisor): forward in eval mode without grad,
  and a training step (forward + backward of the summed output means) in train mode.
Inference runs in fp32, as mmengine's test loop does by default (and mmcv's CPU ops take nothing else). The backbone
runs in fp32 or, with --amp fp16|bf16, under autocast. Backbone options (channels_last, with_cp, ConvNeXt's own
compile) come from --cfg-options; --compile wraps any backbone module in ``torch.compile`` in both parts, so that
backbones without such an option (Swin) can be compared compiled too.
Random weights make detection FPS noisy: the number of proposals surviving NMS differs from a trained model's.
On a machine without a GPU it reports CPU times and the process's peak RSS, labelled as such.
--onnx (CPU only) replaces the backbone measurements: the model is exported (fp32, fixed size, checked against PyTorch,
convnext_dense.deploy) to a temporary file and the graph timed in onnxruntime's CPUExecutionProvider beside the same
exported module in PyTorch eager, on the same image, with the same number of threads (--threads, both sides).
The measurements and reports are convnext_dense/analysis/speed_benchmark.py; this script parses the command line and
runs one worker process per config.

    python tools/analysis_tools/benchmark_speed.py configs/cascade_rcnn/{convnext,swin}_b_3x.py --amp bf16
    python tools/analysis_tools/benchmark_speed.py CONFIG \
        --cfg-options model.backbone.channels_last=True model.backbone.compile=True
    python tools/analysis_tools/benchmark_speed.py configs/upernet/convnext_t_160k_ade20k.py --onnx --device cpu \
        --threads 2
"""
import argparse
import sys

import convnext_dense.analysis.benchmark as common
from convnext_dense.analysis import speed_benchmark
from convnext_dense.analysis.process_isolation import config_jobs, run_isolated, worker_main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    common.add_common_args(parser, out_dir='work_dirs/benchmark_speed')
    parser.add_argument('--amp', choices=sorted(speed_benchmark.AMP_DTYPES), default=None,
                        help='autocast dtype of the backbone measurement (default: fp32, no autocast)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the backbone module, whatever its '
                        'type (the warm-up then includes compilation; give it a few iterations)')
    parser.add_argument('--onnx', action='store_true', help='instead of the backbone alone: export the model to ONNX '
                        '(fp32, fixed size) and time onnxruntime (CPU) against PyTorch eager on it; needs --device cpu')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads of PyTorch (and, with --onnx, of '
                        "onnxruntime's intra-op pool); default: torch's")
    args = parser.parse_args(argv)
    common.check_args(parser, args)
    if args.onnx and common.resolve_device(args.device).type != 'cpu':
        parser.error('--onnx times onnxruntime on the CPU against PyTorch on the CPU: add --device cpu')
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be >= 1')
    if args.compile and args.warmup < 1:
        parser.error('--compile needs --warmup >= 1, or compilation time would be timed')
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker_result:
        return worker_main(args, speed_benchmark.measure)
    return speed_benchmark.report(args, run_isolated(__file__, args.out_dir, config_jobs(args.configs, argv)))


if __name__ == '__main__':
    sys.exit(main())
