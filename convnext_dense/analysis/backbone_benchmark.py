"""What ``tools/analysis_tools/benchmark_backbone.py`` measures and reports: the forward+backward step of a ConvNeXt
backbone alone in several implementations (ours plain and channels_last + compiled, mmpretrain's eager one, timm's
channels_last + compiled one), same arch, batch, size and autocast dtype, as speed-ups over mmpretrain's.

One implementation per worker process (:func:`backbone_jobs`), so that one's compile caches and allocator state do
not touch the next one's numbers.
"""
import sys
import types
from typing import List, Sequence

import torch

from . import benchmark as common
from .process_isolation import Job
from .reports import fmt, format_table, publish_report, report_header, result_env

STEM = 'benchmark_backbone'
IMPLS = ('ours', 'ours_channels_last_compile', 'mmpretrain', 'timm_channels_last_compile')
AMP_DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def backbone_jobs(impls: Sequence[str], argv: Sequence[str]) -> List[Job]:
    """One worker per implementation: the tool's command line with ``--worker IMPL``."""
    return [Job(impl, [*argv, '--worker', impl], impl) for impl in impls]


def build(impl: str, arch: str) -> torch.nn.Module:
    """The ``arch`` ConvNeXt of implementation ``impl``, random weights, returning the four stages' outputs."""
    if impl.startswith('ours'):
        from ..models.backbones.convnext import ConvNeXt
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
    """Step times (loss = sum of the output means, train mode) and GPU peaks of implementation ``args.worker``."""
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


def report(args, results) -> int:
    """The table, JSON and chart: each implementation's step time and its speed-up over mmpretrain's eager one."""
    env = result_env(results)
    gpu = env.get('device') == 'cuda'
    baseline = next((r['train_median_s'] for r in results if r['name'] == 'mmpretrain' and r['status'] == 'ok'), None)
    headers = ['implementation', 'status', 'params (M)', 'fwd+bwd median (ms)', 'speed-up vs mmpretrain eager',
               'peak alloc (GiB)' if gpu else 'peak RSS (MiB)']
    rows = [[r['name'], r['status'], fmt(r.get('params_m'), '.1f'),
             fmt(r.get('train_median_s') and r['train_median_s'] * 1e3, '.1f'),
             fmt(baseline and r.get('train_median_s') and baseline / r['train_median_s'], '.2f'),
             fmt(r.get('train_peak_allocated_gib'), '.3f') if gpu else fmt(r.get('peak_rss_mib'), '.0f')]
            for r in results]
    header = report_header(results)
    settings = (f'ConvNeXt-{args.arch} backbone forward+backward, {args.amp}, batch {args.batch_size}, '
                f'{args.shape[0]}x{args.shape[1]}, {args.warmup} warm-up + {args.iters} timed steps (median)')
    table = '\n'.join([*header, settings, '', format_table(headers, rows)])
    payload = dict(tool=STEM, title=' / '.join(header[:1] + [settings]), **env,
                   settings=dict(arch=args.arch, amp=args.amp, batch_size=args.batch_size, shape=list(args.shape),
                                 iters=args.iters, warmup=args.warmup), results=results)
    panels = [('forward+backward (median)', 'ms', {'step': [r.get('train_median_s') and r['train_median_s'] * 1e3
                                                            for r in results]})]
    return publish_report(args.out_dir, STEM, table, payload, panels, results)
