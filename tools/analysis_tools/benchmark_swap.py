"""Time tools/swap_backbone.py per host config, each run in a fresh process as a user runs it (imports included).

Without HOST arguments it times the host configs of the swap matrix (one per mmdet / mmseg family, the families of
the README's "ConvNeXt in any mmdet / mmseg model" table). Prints a table and writes benchmark_swap.{txt,json,png}
under --out-dir; exits 1 if a swap failed or took longer than the README promises.

    python tools/analysis_tools/benchmark_swap.py
    python tools/analysis_tools/benchmark_swap.py mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py --arch base
"""
import argparse
import sys
from pathlib import Path

from convnext_dense.analysis.swap_benchmark import report, time_swaps
from convnext_dense.host_configs.families import HOST_FAMILIES

TOOL = Path(__file__).resolve().parents[1] / 'swap_backbone.py'


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('hosts', nargs='*', help='host configs (default: one per family of the swap matrix)')
    parser.add_argument('--arch', default='tiny', help='ConvNeXt size to swap in (default: tiny)')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_swap', help='where the report goes')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    hosts = args.hosts or [host for host, _ in HOST_FAMILIES.values()]
    return report(time_swaps(str(TOOL), hosts, args.arch, args.out_dir), args.arch, args.out_dir)


if __name__ == '__main__':
    sys.exit(main())
