"""ConvNeXt backbone forward+backward alone: ours (plain, and channels_last + compile) against mmpretrain's eager
ConvNeXt and timm's channels_last + compiled one, same arch, batch, size and autocast dtype, in one run.

Each implementation runs in its own process (random weights, train mode, loss = sum of the output means), --warmup
untimed steps (compilation included) then --iters timed ones; reported: median step time and, on a GPU, the peak
allocated memory, as a table, JSON and PNG under --out-dir. The backbone targets of the README's results table
(tools/analysis_tools/results_table.py) are ratios of these times. The measurement and report are
convnext_dense/analysis/backbone_benchmark.py; this script parses the command line and runs the workers.

    python tools/analysis_tools/benchmark_backbone.py --arch base --amp bf16 --out-dir work_dirs/backbone
"""
import argparse
import sys

import torch

from convnext_dense.analysis import backbone_benchmark
from convnext_dense.analysis.process_isolation import run_isolated, worker_main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    impls = backbone_benchmark.IMPLS
    parser.add_argument('--impls', nargs='+', choices=impls, default=list(impls))
    parser.add_argument('--arch', default='base', help='ConvNeXt arch name shared by all three (default base)')
    parser.add_argument('--amp', choices=sorted(backbone_benchmark.AMP_DTYPES), default='bf16')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=(800, 1344),
                        help='input size (default 800x1344: 1333x800 padded to 32 as the detectors feed it)')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--device', choices=('cuda', 'cpu'), default=None, help='default: cuda when available')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_backbone')
    parser.add_argument('--worker', choices=impls, default=None, help=argparse.SUPPRESS)
    parser.add_argument('--worker-result', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 1:
        parser.error('--batch-size and --iters must be >= 1, --warmup >= 1 (compilation happens in the warm-up)')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda was asked for, but torch sees no CUDA device; use --device cpu')
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        args.configs = [args.worker]  # what the worker's result names as measured
        return worker_main(args, backbone_benchmark.measure)
    jobs = backbone_benchmark.backbone_jobs(args.impls, argv)
    return backbone_benchmark.report(args, run_isolated(__file__, args.out_dir, jobs))


if __name__ == '__main__':
    sys.exit(main())
