"""The harness the benchmark tools share: their common command-line arguments, the config and model as the runner
would build them (random weights, wrapped as the launcher has mmengine wrap them), and the timed loop with what is
recorded beside it (GPU peaks, peak RSS, the software environment).

The synthetic batches are in :mod:`.synthetic_batches`, running each measurement in its own process in
:mod:`.process_isolation`, and the tables, JSON and charts in :mod:`.reports`.
"""
import argparse
import contextlib
import copy
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import torch

TASKS = {'mmdet': 'detection', 'mmseg': 'segmentation'}
DETECTION_SHAPE = (800, 1333)  # the short/long side of the COCO 3x recipes; padded to 800x1344 by the preprocessor
SEGMENTATION_SHAPE = (512, 512)  # used when a segmentation config names no crop size
GIB = 2**30


# ----------------------------------------------------------------------------------------------------------- CLI
def add_common_args(parser: argparse.ArgumentParser, out_dir: str, configs_required: bool = True):
    from mmengine.config import DictAction
    parser.add_argument('configs', nargs='+' if configs_required else '*', metavar='CONFIG',
                        help='mmdet or mmseg config files, each measured in its own process')
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
    """``'detection'`` or ``'segmentation'``, from the config's registry scope."""
    return TASKS[cfg.default_scope]


def resolve_device(name: Optional[str]) -> torch.device:
    """The device asked for, or CUDA where torch sees one and the CPU otherwise."""
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
    """For ``launcher='pytorch'``, a process group of this one process (unless one exists), ended on exit by
    :func:`~convnext_dense.apis.runner_setup.end_distributed` as a training run ends it. Drop the models wrapped in it
    first: a DDP model holds the group."""
    from ..apis.runner_setup import end_distributed
    dist = torch.distributed
    created = launcher == 'pytorch' and not dist.is_initialized()
    if created:
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo', store=dist.HashStore(), rank=0,
                                world_size=1)
    try:
        yield
    finally:
        if created:
            end_distributed()


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
    """The config's backbone alone, random weights and SyncBN as BN, as :func:`build_model` builds it inside the
    model: for timing the backbone without the heads."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS
    backbone = MODELS.build(copy.deepcopy(cfg.model.backbone))
    backbone.init_weights()
    return revert_sync_batchnorm(backbone).to(device)


def num_params_m(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


# ---------------------------------------------------------------------------------------------- measurement
def synchronize(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_steps(step: Callable, make_input: Callable, warmup: int, iters: int, device: torch.device) -> List[float]:
    """Seconds per ``step(make_input())`` over ``iters`` calls after ``warmup`` untimed ones: every timing of the
    benchmarks goes through this loop. ``make_input`` is untimed (a fresh copy of a batch that the step would
    modify); on CUDA the device is synchronized around each step, so the time is that of its kernels, and the
    peak-memory counters are reset after the warm-up, so peaks are those of steady-state steps (optimizer state
    included)."""
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
