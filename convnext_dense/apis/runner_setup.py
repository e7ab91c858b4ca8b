"""Config loading, up-front checks and machine adaptation shared by tools/train.py, test.py and get_flops.py.

Detection (``default_scope='mmdet'``) and segmentation (``'mmseg'``) configs go through the same steps. Problems a user
can fix (a wrong config path, data or checkpoints not where the config says) are raised as :class:`SetupError` with the
fix, before any model is built, instead of surfacing as a traceback minutes into a run.
"""
import argparse
import difflib
import logging
import os
import os.path as osp
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from ..checkpoint import CheckpointError
from ..checkpoint import load_checkpoint as load_checkpoint_into
from ..checkpoint.reading import HF_WEIGHT_FILES
from ..datasets.data_checks import check_annotations, check_num_classes
from ..engine.optimizers.precision import is_amp, without_amp
from ..engine.runner_internals import mark_weights_loaded
from ..engine.safeguards import apply_safeguards
from ..host_configs import HostConfigError
from ..host_configs.preflight import check_backbone_fit
from ..patches import UNSAFE_LOAD_ENV
from ..utils.config_tree import get, leaf_datasets, walk

SCOPES = ('mmdet', 'mmseg')
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')
REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_HINTS = {
    'mmdet': 'put COCO 2017 under data/coco/ (annotations/instances_{train,val}2017.json, train2017/, val2017/)',
    'mmseg': 'put ADE20K under data/ade/ADEChallengeData2016/ (images/ and annotations/, each with training/ and '
             'validation/)',
}


class SetupError(RuntimeError):
    """A problem with the command line, config, data or checkpoints that the user can fix; the message says how."""


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """``--device`` of the tools that run a model on images, as mmdet's and mmseg's demos name it."""
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu',
                        help='device to run the model on (default: cuda:0 if there is a GPU, else cpu)')


def add_cfg_options_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config settings, e.g. model.backbone.init_cfg=None '
                             'train_dataloader.batch_size=4 (lists as key="[a,b]")')


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """The options tools/train.py and tools/test.py share with mmdet's and mmseg's own tools."""
    parser.add_argument('--work-dir', help='folder for logs, checkpoints and metrics '
                                           '(default: ./work_dirs/<config name>)')
    add_cfg_options_arg(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher: none for one process, pytorch under torchrun (tools/dist_*.sh)')
    parser.add_argument('--unsafe-load', nargs=0, action=_AllowUnsafeLoad, default=False,
                        help='load checkpoints (resume, load_from, the one to test) that hold Python objects beyond '
                             'tensors; unpickling them can run code, so only for files you trust')
    # torch.distributed.launch passes --local-rank (torch >= 2) or --local_rank; torchrun sets LOCAL_RANK itself.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)


class _AllowUnsafeLoad(argparse.Action):
    """``--unsafe-load`` sets the environment switch of our checkpoint loader (:mod:`convnext_dense.patches`),
    which mmengine calls deep inside the Runner."""

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[UNSAFE_LOAD_ENV] = '1'
        setattr(namespace, self.dest, True)


def load_config(path: str, cfg_options: Optional[dict] = None, launcher: str = 'none',
                work_dir: Optional[str] = None, local_rank: int = 0) -> Config:
    """Read ``path``, apply ``--cfg-options`` and the launcher, and check that it is an mmdet or mmseg config whose
    neck and heads read what its backbone returns (for our ConvNeXt: :func:`check_backbone_fit`)."""
    if not osp.isfile(path):
        raise SetupError(f'config file not found: {path}{_similar_configs(path)}')
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise SetupError(f"{path}: default_scope is {scope!r}; these tools run mmdet or mmseg configs, which set "
                         "default_scope='mmdet' or 'mmseg' (through their _base_ default_runtime.py)")
    try:
        check_backbone_fit(cfg)
    except HostConfigError as error:
        raise SetupError(f'{path}: {error}') from None
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def adapt_to_machine(cfg: Config) -> List[str]:
    """Make a GPU recipe run where it is started; returns what was changed, for the log.

    Without a GPU: AMP is switched off, and torchrun launches (``--launcher pytorch``) use CPU DDP over gloo, with BN
    instead of SyncBN (torch's SyncBatchNorm needs a GPU when distributed). A single process needs nothing here:
    mmengine's Runner itself reverts SyncBN to BN there, and says so in the log.
    """
    if torch.cuda.is_available():
        return []
    notes = []
    if is_amp(cfg.optim_wrapper):
        cfg.optim_wrapper = without_amp(cfg.optim_wrapper)
        notes.append('no GPU: AMP (AmpOptimWrapper) switched off, training in fp32')
    if cfg.launcher in ('slurm', 'mpi'):
        raise SetupError(f'--launcher {cfg.launcher} needs GPUs (mmengine binds each process to one); without GPUs, '
                         'launch CPU processes with torchrun: tools/dist_train.sh CONFIG NUM_PROCESSES')
    if cfg.launcher == 'pytorch':
        converted = [key for key, norm in walk(cfg.model, 'model') if norm.get('type') in SYNC_BN_TYPES]
        for key in converted:
            get(cfg, key).type = 'BN'
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=cfg.get('find_unused_parameters', False))
        notes.append('no GPU: distributed over gloo with DDP on CPU'
                     + (f'; SyncBN -> BN in {len(converted)} places: {", ".join(converted)}' if converted else ''))
    return notes


def check_data(cfg: Config, loaders: Sequence[str]) -> None:
    """Every data root, annotation file and image folder the given dataloaders (and their evaluators) read exists,
    the model's heads have the data's number of classes, and the annotations are usable
    (:mod:`convnext_dense.datasets.data_checks`; the files are read once per machine)."""
    for loader in loaders:
        if cfg.get(loader) is None:
            continue
        for key, dataset in leaf_datasets(cfg[loader].dataset, f'{loader}.dataset'):
            for name, path in _dataset_paths(dataset):
                _require_data(cfg.default_scope, f'{key}.{name}', path, override=f'{key}.data_root')
        evaluator_key = loader.replace('dataloader', 'evaluator')
        evaluators = cfg.get(evaluator_key)
        for i, evaluator in enumerate(evaluators if isinstance(evaluators, list) else [evaluators]):
            if isinstance(evaluator, dict) and _is_local(evaluator.get('ann_file')):
                name = f'{evaluator_key}[{i}].ann_file' if isinstance(evaluators, list) else f'{evaluator_key}.ann_file'
                _require_data(cfg.default_scope, name, evaluator.ann_file, override=name)
    errors = check_num_classes(cfg, loaders)
    if os.environ.get('LOCAL_RANK', '0') == '0':
        found, warnings = check_annotations(cfg, loaders)
        errors += found
        for warning in warnings:
            print_log(warning, logger='current', level=logging.WARNING)
    if errors:
        raise SetupError('\n'.join(errors))


def check_pretrained(cfg: Config) -> None:
    """Every local pretrained checkpoint named in the model (init_cfg or ``pretrained``) exists."""
    for key, node in walk(cfg.model, 'model'):
        if node.get('type') == 'Pretrained' and _is_local(node.get('checkpoint')):
            _require_checkpoint(node.checkpoint, f'{key}.checkpoint', key)
        if _is_local(node.get('pretrained')):
            _require_checkpoint(node.pretrained, f'{key}.pretrained', f'{key}.pretrained')
    if _is_local(cfg.get('load_from')):
        _require_checkpoint(cfg.load_from, 'load_from', 'load_from')


def require_checkpoint(path: str) -> None:
    """The checkpoint to test exists (a file, or the folder of a Hugging Face model)."""
    if osp.isdir(path):
        if not any(osp.isfile(osp.join(path, name)) for name in HF_WEIGHT_FILES):
            raise SetupError(f'{path} is a folder without {" or ".join(HF_WEIGHT_FILES)}: give a checkpoint file, or '
                             'the folder of a Hugging Face model saved with save_pretrained')
    elif not osp.isfile(path):
        raise SetupError(f'checkpoint not found: {path}. tools/train.py saves them in its work dir '
                         '(work_dirs/<config name>/epoch_N.pth or iter_N.pth; last_checkpoint names the latest)')


def build_runner(cfg: Config, notes: Sequence[str], new_classes: bool = False):
    """Build mmengine's Runner (or ``runner_type`` from the RUNNERS registry) with our safeguards
    (:mod:`convnext_dense.engine.safeguards`), and log what was adapted.

    The trained model it loads (``load_from``, the checkpoint of tools/test.py) goes through
    :func:`convnext_dense.load_checkpoint`, which maps released layouts and refuses one that does not fit;
    ``new_classes`` (fine-tuning) lets the class layers differ from the checkpoint's. Resuming (``cfg.resume``) is
    mmengine's own, which reads the checkpoint through ``Runner.load_checkpoint`` too.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if cfg.launcher == 'pytorch' and not torch.cuda.is_available() and not torch.distributed.is_initialized():
        # mmengine's own init binds each process to a CUDA device; the Runner takes over an existing process group.
        torch.distributed.init_process_group(backend='gloo')
    notes = [*notes, *apply_safeguards(cfg)]
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if not cfg.get('resume'):  # resuming reads mmengine's own checkpoints through this method: left as it is
        runner.load_checkpoint = _trained_model_loader(runner, new_classes)
    for note in notes:
        runner.logger.info(note)
    return runner


def end_distributed():
    """Free a distributed run's process group while the interpreter is whole, after the run succeeded: left to the
    exit's teardown, gloo's worker threads still hold work with Python references and a rank aborts ('terminate
    called without an active exception'). The runner's reference cycles (its DDP model holds the group) are collected
    first; call this with no runner referenced."""
    import gc
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.destroy_process_group()
        gc.collect()


def _trained_model_loader(runner, new_classes: bool):
    """``Runner.load_checkpoint`` (what mmengine calls for ``load_from``) through our whole-model loader."""
    from mmengine.model import BaseTTAModel, is_model_wrapper

    def load_checkpoint(filename: str, map_location='cpu', strict: bool = False, revise_keys=()):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model_cfg = runner.cfg.model
        if isinstance(model, BaseTTAModel):  # tools/test.py --tta: the checkpoint is the wrapped model's
            model, model_cfg = model.module, model_cfg.module
        try:
            report = load_checkpoint_into(model, filename, new_classes=new_classes, map_location=map_location,
                                          model_cfg=model_cfg)
        except CheckpointError as exc:
            raise SetupError(str(exc)) from None
        checkpoint = dict(meta=dict(dataset_meta=report.dataset_meta), state_dict=model.state_dict())
        runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        mark_weights_loaded(runner)
        return checkpoint

    return load_checkpoint


def _similar_configs(path: str) -> str:
    cwd = Path.cwd()
    candidates = sorted({str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(p)
                         for root in (cwd, REPO_ROOT) for p in (root / 'configs').rglob('*.py')
                         if '_base_' not in p.parts})
    by_name = {osp.basename(c): c for c in candidates}
    close = difflib.get_close_matches(osp.basename(path), list(by_name), n=3, cutoff=0.6)
    if close:
        return '; did you mean ' + ' or '.join(by_name[c] for c in close) + '?'
    return f'; the configs are under {REPO_ROOT / "configs"}' if candidates else ''


def _require_data(scope: str, key: str, path: str, override: str) -> None:
    if osp.exists(path):
        return
    raise SetupError(
        f'data not found: {path} ({key}) does not exist. For a synthetic data set (no download), run '
        f'`python tools/misc/make_demo_data.py` and use the configs in configs/demo/; for the real data '
        f'{DATA_HINTS[scope]}; or point the config at your copy with --cfg-options {override}=PATH')


def _require_checkpoint(path: str, key: str, init_key: str) -> None:
    if osp.isfile(path) or osp.isdir(path):  # a folder: Hugging Face's save_pretrained
        return
    fix = 'download it (see the README) and put it there, or give its path with ' \
          f'--cfg-options {key}=PATH, or train without it (from scratch) with --cfg-options {init_key}=None'
    if key == 'load_from':
        fix = 'give an existing checkpoint, or drop it with --cfg-options load_from=None'
    raise SetupError(f'pretrained checkpoint not found: {path} ({key}); {fix}')


def _is_local(path) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def _dataset_paths(dataset: dict) -> Iterator[Tuple[str, str]]:
    """(config key, path) for what a dataset reads, joined with ``data_root`` as mmengine's BaseDataset does."""
    root = dataset.get('data_root') or ''
    if _is_local(root):
        yield 'data_root', root
    elif root:
        return  # remote storage: not checked
    if _is_local(dataset.get('ann_file')):
        yield 'ann_file', osp.join(root, dataset.ann_file)
    for name, prefix in (dataset.get('data_prefix') or {}).items():
        if _is_local(prefix):
            yield f'data_prefix.{name}', osp.join(root, prefix)
