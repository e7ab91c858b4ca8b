"""The README's results table, generated from one folder of benchmark JSON (what tools/gpu_check.sh writes).

Reads every ``benchmark_memory.json`` (the folder it sits in names the setting: ``memory_default``,
``memory_fastest``, ``memory_leanest``) and ``benchmark_backbone.json`` under FOLDER, and prints markdown naming the
device, torch and CUDA: the detector table, ConvNeXt against Swin size by size (configs named ``convnext_*`` and
``swin_*``), the backbone table and the targets as measured ratios. The markdown is also written to
FOLDER/RESULTS.md. CPU estimates (``benchmark_memory.py --estimate``) are tabled as such: estimated GPU memory, no
step times; CPU step times in ``cpu_steps_<setting>`` folders give what each setting costs as a ratio to the default
(tools/analysis_tools/estimate_memory_table.sh). The tables are built by convnext_dense/analysis/results_table.py.

    python tools/analysis_tools/results_table.py work_dirs/gpu_check
"""
import argparse
import sys
from pathlib import Path

from convnext_dense.analysis.results_table import write_results


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folder', type=Path)
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f'{args.folder} is not a folder')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        print(write_results(args.folder))
    except FileNotFoundError as exc:
        sys.exit(f'error: {exc}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
