"""ConvNeXt backbone forward+backward alone: ours (plain, and channels_last + compile) against mmpretrain's eager
ConvNeXt and timm's channels_last + compiled one, same arch, batch, size and autocast dtype, in one run.

Each implementation runs in its own process (random weights, train mode, loss = sum of the output means), --warmup
untimed steps (compilation included) then --iters timed ones; reported: median step time and, on a GPU, the peak
allocated memory, as a table, JSON and PNG under --out-dir. The targets of issue 9 read these ratios.

    python tools/analysis_tools/benchmark_backbone.py --arch base --amp bf16 --out-dir work_dirs/backbone
"""
import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

import torch

import convnext_dense.analysis.benchmark as common

IMPLS = ('ours', 'ours_channels_last_compile', 'mmpretrain', 'timm_channels_last_compile')
AMP_DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--impls', nargs='+', choices=IMPLS, default=list(IMPLS))
    parser.add_argument('--arch', default='base', help='ConvNeXt arch name shared by all three (default base)')
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES), default='bf16')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=(800, 1344),
                        help='input size (default 800x1344: 1333x800 padded to 32 as the detectors feed it)')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--device', choices=('cuda', 'cpu'), default=None, help='default: cuda when available')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_backbone')
    parser.add_argument('--worker', choices=IMPLS, default=None, help=argparse.SUPPRESS)
    parser.add_argument('--worker-result', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 1:
        parser.error('--batch-size and --iters must be >= 1, --warmup >= 1 (compilation happens in the warm-up)')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda was asked for, but torch sees no CUDA device; use --device cpu')
    return args


def build(impl: str, arch: str) -> torch.nn.Module:
    if impl.startswith('ours'):
        from convnext_dense import ConvNeXt
        fast = impl == 'ours_channels_last_compile'
        return ConvNeXt(arch, channels_last=fast, compile=fast)
    if impl == 'mmpretrain':
        # mmpretrain.models imports its multimodal models, which break on some transformers versions; not needed.
        sys.modules.setdefault('mmpretrain.models.multimodal', types.ModuleType('mmpretrain.models.multimodal'))
        from mmpretrain.models.backbones.convnext import ConvNeXt as MMPretrainConvNeXt
        return MMPretrainConvNeXt(arch=arch, out_indices=(0, 1, 2, 3), gap_before_final_norm=False)
    import timm
    model = timm.create_model(f'convnext_{arch}', pretrained=False, features_only=True)
    return torch.compile(model.to(memory_format=torch.channels_last))


def measure(args) -> dict:
    device = common.resolve_device(args.device)
    torch.manual_seed(0)
    model = build(args.worker, args.arch).to(device)
    model.train()  # not chained: mmpretrain's train() returns None
    x = torch.randn(args.batch_size, 3, *args.shape, device=device)
    if args.worker.endswith('channels_last_compile'):
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = AMP_DTYPES[args.amp]

    def step(inputs):
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = sum(out.float().mean() for out in model(inputs))
        loss.backward()

    times = common.time_steps(step, lambda: x, args.warmup, args.iters, device)
    return dict(impl=args.worker, arch=args.arch, amp=args.amp, input_shape=list(x.shape),
                params_m=common.num_params_m(model), env=common.environment(device),
                **common.timing_summary(times, 'train'), **common.gpu_peaks(device, 'train'))


def run_all(args, argv) -> list:
    out = Path(args.out_dir)
    (out / 'logs').mkdir(parents=True, exist_ok=True)
    results = []
    for impl in args.impls:
        result_file, log_file = out / 'logs' / f'{impl}.json', out / 'logs' / f'{impl}.log'
        result_file.unlink(missing_ok=True)
        print(f'[{impl}] measuring (log: {log_file})', flush=True)
        with open(log_file, 'w') as log:
            subprocess.run([sys.executable, __file__, *argv, '--worker', impl, '--worker-result', str(result_file)],
                           stdout=log, stderr=subprocess.STDOUT)
        result = json.loads(result_file.read_text()) if result_file.is_file() else dict(
            status='failed', error=f'worker died, see {log_file}')
        results.append(dict(result, name=impl))
    return results


def report(args, results) -> int:
    env = common.result_env(results)
    gpu = env.get('device') == 'cuda'
    baseline = next((r['train_median_s'] for r in results if r['name'] == 'mmpretrain' and r['status'] == 'ok'), None)
    headers = ['implementation', 'status', 'params (M)', 'fwd+bwd median (ms)', 'speed-up vs mmpretrain eager',
               'peak alloc (GiB)' if gpu else 'peak RSS (MiB)']
    rows = [[r['name'], r['status'], common.fmt(r.get('params_m'), '.1f'),
             common.fmt(r.get('train_median_s') and r['train_median_s'] * 1e3, '.1f'),
             common.fmt(baseline and r.get('train_median_s') and baseline / r['train_median_s'], '.2f'),
             common.fmt(r.get('train_peak_allocated_gib'), '.3f') if gpu else common.fmt(r.get('peak_rss_mib'), '.0f')]
            for r in results]
    header = common.report_header(results)
    settings = (f'ConvNeXt-{args.arch} backbone forward+backward, {args.amp}, batch {args.batch_size}, '
                f'{args.shape[0]}x{args.shape[1]}, {args.warmup} warm-up + {args.iters} timed steps (median)')
    table = '\n'.join([*header, settings, '', common.format_table(headers, rows)])
    print(table)
    payload = dict(tool='benchmark_backbone', title=' / '.join(header[:1] + [settings]), **env,
                   settings=dict(arch=args.arch, amp=args.amp, batch_size=args.batch_size, shape=list(args.shape),
                                 iters=args.iters, warmup=args.warmup), results=results)
    panels = [('forward+backward (median)', 'ms', {'step': [r.get('train_median_s') and r['train_median_s'] * 1e3
                                                            for r in results]})]
    paths = common.write_report(args.out_dir, 'benchmark_backbone', payload, table, panels, [r['name'] for r in results])
    print(f"\nwrote {paths['json']}, {paths['table']}, {paths['png']}")
    return 1 if any(r['status'] == 'failed' for r in results) else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        args.configs = [args.worker]
        return common.worker_main(args, measure)
    return report(args, run_all(args, argv))


if __name__ == '__main__':
    sys.exit(main())
