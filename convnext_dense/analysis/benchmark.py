"""What the benchmark tools share: config loading, model building, synthetic batches, timing and reports.

Every config is measured in its own process (:func:`run_isolated`) so that peak-memory counters, allocator caches and
compile caches of one model never leak into the next one's numbers.
"""
import argparse
import contextlib
import copy
import gc
import json
import platform
import resource
import statistics
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

TASKS = {'mmdet': 'detection', 'mmseg': 'segmentation'}
DETECTION_SHAPE = (800, 1333)  # the short/long side of the COCO 3x recipes; padded to 800x1344 by the preprocessor
SEGMENTATION_SHAPE = (512, 512)  # used when a segmentation config names no crop size
GIB = 2**30


# ----------------------------------------------------------------------------------------------------------- CLI
def add_common_args(parser: argparse.ArgumentParser, out_dir: str, configs_required: bool = True):
    from mmengine.config import DictAction
    parser.add_argument('configs', nargs='+' if configs_required else '*', metavar='CONFIG', help='mmdet or mmseg config files, each measured '
                        'in its own process')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides applied to every config, e.g. model.backbone.with_cp=True')
    parser.add_argument('--batch-size', type=int, default=2, help='images per training step (default 2, as in '
                        'the recipes: 2 images per GPU)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=None,
                        help=f'image size; default {DETECTION_SHAPE[0]}x{DETECTION_SHAPE[1]} for detection and the '
                        "config's crop size for segmentation (which is then also the preprocessor's pad size)")
    parser.add_argument('--iters', type=int, default=20, help='timed iterations (default 20)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed iterations first (default 5)')
    parser.add_argument('--device', choices=('cuda', 'cpu'), default=None, help='default: cuda when available')
    parser.add_argument('--seed', type=int, default=0, help='seed of the synthetic data and the weights')
    parser.add_argument('--out-dir', default=out_dir, help=f'where the JSON, PNG and logs go (default {out_dir})')
    parser.add_argument('--worker-result', default=None, help=argparse.SUPPRESS)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """Fail before spawning anything when the command line cannot work."""
    missing = [c for c in args.configs if not Path(c).is_file()]
    if missing:
        parser.error(f'config file(s) not found: {", ".join(missing)}')
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 0:
        parser.error('--batch-size and --iters must be >= 1 and --warmup >= 0')
    if args.shape is not None and min(args.shape) < 32:
        parser.error(f'--shape must be at least 32x32, got {args.shape[0]}x{args.shape[1]}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda was asked for, but torch sees no CUDA device; use --device cpu')


# -------------------------------------------------------------------------------------------- config and model
def load_benchmark_config(path: str, cfg_options: dict):
    """Read a config as tools/train.py does, apply the overrides and enter its registry scope (mmdet or mmseg)."""
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    # Importing the package registers the backbone and makes `mmseg::` bases resolve with the OneDL distributions.
    from ..apis.runner_setup import load_config

    # The current logger decides what init_weights & co. print; INFO would dump one line per parameter.
    if not MMLogger.check_instance_created('benchmark'):
        MMLogger.get_instance('benchmark', log_level='WARNING')
    cfg = load_config(path, cfg_options)
    init_default_scope(cfg.default_scope)
    # Random weights: benchmarks never download or read checkpoints.
    for key in ('init_cfg', 'pretrained'):
        cfg.model.backbone.pop(key, None)
    cfg.model.pop('pretrained', None)
    return cfg


def config_task(cfg) -> str:
    return TASKS[cfg.default_scope]


def resolve_device(name: Optional[str]) -> torch.device:
    return torch.device(name or ('cuda' if torch.cuda.is_available() else 'cpu'))


def image_shape(cfg, shape: Optional[Sequence[int]]) -> tuple:
    """The benchmark image size; for segmentation the preprocessor pads to it, so the network sees exactly it."""
    if config_task(cfg) == 'detection':
        return tuple(shape or DETECTION_SHAPE)
    preprocessor = cfg.model.data_preprocessor
    if shape is None:
        return tuple(preprocessor.get('size') or cfg.get('crop_size') or SEGMENTATION_SHAPE)
    if preprocessor.get('size') is not None:
        preprocessor.size = tuple(shape)
    return tuple(shape)


def build_model(cfg, device: torch.device) -> torch.nn.Module:
    """The config's model with random weights, SyncBN reverted to BN (one process, no process group)."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    return revert_sync_batchnorm(model).to(device)


LAUNCHERS = ('pytorch', 'none')  # as tools/train.py's --launcher: distributed (DDP on each GPU) or one process


@contextlib.contextmanager
def process_group_for(launcher: str, device: torch.device):
    """For ``launcher='pytorch'``, a process group of this one process (unless one exists), destroyed on exit; drop
    the models wrapped in it first."""
    dist = torch.distributed
    created = launcher == 'pytorch' and not dist.is_initialized()
    if created:
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo', store=dist.HashStore(), rank=0,
                                world_size=1)
    try:
        yield
    finally:
        if created:
            gc.collect()  # a DDP model in a reference cycle still holds the group
            dist.destroy_process_group()


def wrap_as_launched(cfg, model: torch.nn.Module, launcher: str, device: torch.device) -> torch.nn.Module:
    """``model`` as mmengine's Runner wraps it for ``launcher``: with ``pytorch``, in the config's
    ``model_wrapper_cfg`` or the Runner's default ``MMDistributedDataParallel``, in a one-process group. DDP's gradient
    buckets are part of every GPU's training memory: one more copy of the trainable parameters' gradients, unless
    ``model_wrapper_cfg`` sets ``gradient_as_bucket_view=True``."""
    if launcher == 'none':
        return model
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel
    if not torch.distributed.is_initialized():
        raise RuntimeError('wrap_as_launched(launcher="pytorch") needs a process group: call it within '
                           'process_group_for(launcher, device)')
    device_ids = [device.index or 0] if device.type == 'cuda' else None
    wrapper_cfg = copy.deepcopy(cfg.get('model_wrapper_cfg'))
    if wrapper_cfg is None:  # mmengine's Runner.wrap_model
        return MMDistributedDataParallel(module=model, device_ids=device_ids, broadcast_buffers=False,
                                         find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
    wrapper_type = wrapper_cfg['type']
    wrapper_type = MODEL_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) else wrapper_type
    default_args = dict(module=model)
    if issubclass(wrapper_type, DistributedDataParallel):
        default_args['device_ids'] = device_ids
    return MODEL_WRAPPERS.build(wrapper_cfg, default_args=default_args)


def build_backbone(cfg, device: torch.device) -> torch.nn.Module:
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS
    backbone = MODELS.build(copy.deepcopy(cfg.model.backbone))
    backbone.init_weights()
    return revert_sync_batchnorm(backbone).to(device)


def num_params_m(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def num_classes(cfg) -> int:
    """The smallest ``num_classes`` of the model's heads, so every synthetic label is valid for all of them."""
    found = []

    def visit(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'num_classes' and isinstance(value, int):
                    found.append(value)
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    visit(cfg.model)
    if not found:
        raise ValueError('no num_classes in the model config; the synthetic labels need one')
    return min(found)


# ------------------------------------------------------------------------------------------- synthetic batches
def synthetic_batch(cfg, batch_size: int, shape: tuple, rng: np.random.Generator, with_gt: bool = True,
                    num_instances: int = 7) -> dict:
    """A batch as the mmdet/mmseg data loaders deliver it (uint8 CHW images plus data samples), before the
    model's data preprocessor. Detection: ``num_instances`` boxes (HorizontalBoxes) with elliptic BitmapMasks and
    labels per image. Segmentation: a label map of random blocks."""
    height, width = shape
    classes = num_classes(cfg)
    inputs, samples = [], []
    for index in range(batch_size):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8)))
        meta = dict(img_id=index, img_path=f'synthetic_{index}.jpg', ori_shape=shape, img_shape=shape,
                    pad_shape=shape, scale_factor=(1.0, 1.0), flip=False, flip_direction=None)
        if config_task(cfg) == 'detection':
            samples.append(_detection_sample(meta, rng, classes, num_instances, with_gt))
        else:
            samples.append(_segmentation_sample(meta, rng, classes, with_gt))
    return dict(inputs=inputs, data_samples=samples)


def _detection_sample(meta: dict, rng: np.random.Generator, classes: int, count: int, with_gt: bool):
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=meta)
    if not with_gt:
        return sample
    height, width = meta['img_shape']
    sizes = rng.uniform(0.05, 0.5, (count, 2)) * (width, height)
    corners = rng.uniform(0, 1, (count, 2)) * ((width, height) - sizes)
    boxes = np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)
    masks = np.zeros((count, height, width), dtype=np.uint8)
    ys, xs = np.mgrid[:height, :width]
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        mask[((xs - cx) / rx)**2 + ((ys - cy) / ry)**2 <= 1] = 1
    sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.from_numpy(boxes)),
        labels=torch.from_numpy(rng.integers(0, classes, count)),
        masks=BitmapMasks(masks, height, width))
    return sample


def _segmentation_sample(meta: dict, rng: np.random.Generator, classes: int, with_gt: bool):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(meta, reduce_zero_label=False))
    if not with_gt:
        return sample
    height, width = meta['img_shape']
    block = 16
    coarse = rng.integers(0, classes, (-(-height // block), -(-width // block)))
    labels = np.kron(coarse, np.ones((block, block), dtype=coarse.dtype))[:height, :width]
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(labels[None].astype(np.int64)))
    return sample


# ---------------------------------------------------------------------------------------------- measurement
def synchronize(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_steps(step: Callable, make_input: Callable, warmup: int, iters: int, device: torch.device) -> List[float]:
    """Seconds per ``step(make_input())``, synchronized, ``make_input`` untimed. The GPU peak-memory counters are
    reset after the warm-up, so peaks are those of steady-state steps (optimizer state included)."""
    for _ in range(warmup):
        step(make_input())
    synchronize(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(iters):
        data = make_input()
        synchronize(device)
        start = time.perf_counter()
        step(data)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def timing_summary(times: List[float], prefix: str) -> dict:
    return {f'{prefix}_median_s': statistics.median(times), f'{prefix}_mean_s': statistics.fmean(times),
            f'{prefix}_times_s': times}


def gpu_peaks(device: torch.device, prefix: str) -> dict:
    """Peak allocated/reserved GPU memory since the last reset, in GiB (nothing on CPU)."""
    if device.type != 'cuda':
        return {}
    return {f'{prefix}_peak_allocated_gib': torch.cuda.max_memory_allocated(device) / GIB,
            f'{prefix}_peak_reserved_gib': torch.cuda.max_memory_reserved(device) / GIB}


def peak_rss_mib() -> float:
    """High-water mark of this process's resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment(device: torch.device) -> dict:
    import mmcv
    import mmengine
    env = dict(device=device.type, torch=torch.__version__, mmengine=mmengine.__version__, mmcv=mmcv.__version__,
               python=platform.python_version())
    for name in ('mmdet', 'mmseg'):
        env[name] = __import__(name).__version__
    if device.type == 'cuda':
        env.update(device_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    else:
        env.update(device_name=_cpu_name(), cpu_threads=torch.get_num_threads())
    return env


def _cpu_name() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return 'CPU: ' + line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'CPU: ' + (platform.processor() or platform.machine())


def apply_env_cfg(cfg):
    """What the runner would set from ``env_cfg`` that changes speed."""
    torch.backends.cudnn.benchmark = bool(cfg.get('env_cfg', {}).get('cudnn_benchmark', False))


# ------------------------------------------------------------------------------------------ process isolation
def worker_main(args: argparse.Namespace, measure: Callable[[argparse.Namespace], dict]) -> int:
    """Measure ``args.configs[0]`` in this process and write the result JSON for the parent."""
    config = args.configs[0]
    result = dict(config=config, status='ok', error=None)
    code = 0
    try:
        result.update(measure(args))
    except torch.OutOfMemoryError as exc:
        result.update(status='oom', error=str(exc).splitlines()[0])
    except Exception as exc:  # reported in the table and the JSON, the traceback goes to the log
        traceback.print_exc()
        result.update(status='failed', error=f'{type(exc).__name__}: {exc}')
        code = 1
    device = resolve_device(args.device)
    result.setdefault('env', environment(device))
    result['peak_rss_mib'] = peak_rss_mib()
    Path(args.worker_result).write_text(json.dumps(result, indent=2, default=str))
    return code


def run_isolated(script: str, args: argparse.Namespace, argv: List[str]) -> List[dict]:
    """Run ``script`` once per config in a fresh Python process; collect the result dicts in config order."""
    out_dir = Path(args.out_dir)
    (out_dir / 'logs').mkdir(parents=True, exist_ok=True)
    others = [a for a in argv if a not in args.configs]
    names = unique_names(args.configs)
    results = []
    for config, name in zip(args.configs, names):
        result_file = out_dir / 'logs' / f'{name}.json'
        log_file = out_dir / 'logs' / f'{name}.log'
        result_file.unlink(missing_ok=True)
        print(f'[{name}] measuring {config} (log: {log_file})', flush=True)
        with open(log_file, 'w') as log:
            proc = subprocess.run([sys.executable, script, config, '--worker-result', str(result_file), *others],
                                  stdout=log, stderr=subprocess.STDOUT)
        if result_file.is_file():
            result = json.loads(result_file.read_text())
        else:
            tail = log_file.read_text().strip().splitlines()[-1:] or ['']
            result = dict(config=config, status='failed', error=f'worker exited with code {proc.returncode}: '
                          f'{tail[0]}')
        result['name'] = name
        if result['status'] != 'ok':
            print(f'[{name}] {result["status"].upper()}: {result["error"]} (see {log_file})', flush=True)
        results.append(result)
    return results


def unique_names(configs: Sequence[str]) -> List[str]:
    stems = [Path(c).stem for c in configs]
    return [stem if stems.count(stem) == 1 else f'{i}_{stem}' for i, stem in enumerate(stems)]


# ------------------------------------------------------------------------------------------------- reporting
def result_env(results: List[dict]) -> dict:
    """The environment the workers measured in (device, versions); empty if none got that far."""
    return next((r['env'] for r in results if 'env' in r), {})


def report_header(results: List[dict]) -> List[str]:
    env = result_env(results)
    lines = [f"device: {env.get('device_name', '?')} | torch {env.get('torch', '?')}"
             + (f" (CUDA {env['cuda']})" if env.get('cuda') else '')
             + f" | mmdet {env.get('mmdet', '?')} | mmseg {env.get('mmseg', '?')} | mmcv {env.get('mmcv', '?')}"]
    if env.get('device') == 'cpu':
        lines.append('CPU RUN: no GPU memory; memory is the peak RSS of each benchmark process (ru_maxrss), '
                     'times are CPU times')
    return lines


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = lambda cells: ' | '.join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return '\n'.join([line(headers), '-+-'.join('-' * w for w in widths), *map(line, rows)])


def fmt(value, spec: str = '.3f') -> str:
    return '-' if value is None else format(value, spec)


def write_report(out_dir: str, stem: str, payload: dict, table: str,
                 panels: Sequence[tuple], names: Sequence[str]) -> Dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.txt`` (the table) and ``<stem>.png`` (one bar panel per metric)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = dict(json=out / f'{stem}.json', table=out / f'{stem}.txt', png=out / f'{stem}.png')
    paths['json'].write_text(json.dumps(payload, indent=2, default=str))
    paths['table'].write_text(table + '\n')
    bar_chart(paths['png'], names, panels, title=payload['title'])
    return paths


def bar_chart(path: Path, names: Sequence[str], panels: Sequence[tuple], title: str):
    """``panels``: (title, unit, {series: [value per name, None where missing]}) each, drawn side by side."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    width = max(4.5, 1.2 * len(names) + 2.5) * len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 5.2), squeeze=False)
    x = np.arange(len(names))
    for ax, (panel_title, unit, series) in zip(axes[0], panels):
        bar_width = 0.8 / len(series)
        for k, (label, values) in enumerate(series.items()):
            # A missing value (failed or OOM run) is an empty bar labelled n/a.
            bars = ax.bar(x + (k - (len(series) - 1) / 2) * bar_width, [v or 0 for v in values], bar_width, label=label)
            ax.bar_label(bars, labels=['n/a' if v is None else f'{v:.4g}' for v in values], fontsize=7)
        ax.set_title(panel_title)
        ax.set_ylabel(unit)
        ax.set_xticks(x, names, rotation=20, ha='right', fontsize=8)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, width=int(width * 14)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
