"""Peak GPU training memory predicted on a CPU, from one real training step with tensor-level accounting.

Why: users (and CI) without a GPU want to compare ConvNeXt with Swin and know whether a config fits their card before
they rent one. Shape-only tracing (FakeTensor, meta) cannot run mmcv's C++ ops (NMS, RoIAlign), whose outputs decide
how many RoIs the heads see, so the step really runs, on the CPU, while

- :class:`StorageTracker` (a ``TorchDispatchMode``) sees every tensor any aten op returns, forward and backward, and
  records each new storage's allocation and, through a weakref finalizer, its release;
- :func:`cuda_autocast` makes CPU autocast behave as CUDA autocast does for memory: CPU autocast (bfloat16, 2 bytes
  like float16) casts the matmul/conv/linear family to half precision and caches weight copies per autocast region
  as CUDA does, and :class:`CudaFp32Policy` (a ``TorchFunctionMode``) runs in float32 what CUDA's autocast runs in
  float32 and CPU's does not (layer/group norm, softmax, exp/log/pow, sums, ...), so activations saved for backward
  have the dtypes they have on a GPU; the convolutions and matrix products themselves compute in float32 and return
  half precision (:func:`_in_fp32`): the same tensors, at float32 speed on CPUs without native bfloat16;
- the loop is that of a ``tools/train.py`` run (``loop='runner'``): ``train_step`` with the config's own optimizer
  (constructor, layer decay and all), with ``foreach=True`` as PyTorch picks for CUDA tensors, so its temporaries are
  those of a GPU step; for one GPU of a distributed run (``launcher='pytorch'``, the default, as the recipes train)
  the model is wrapped as mmengine's Runner wraps it, in a one-process group, so DDP's gradient buckets are recorded
  like any other tensor: one more copy of the trainable parameters' gradients, for the whole step (or the gradients
  themselves, with ``model_wrapper_cfg=dict(gradient_as_bucket_view=True)``). Or it is the loop that measured the
  memory anchors (``loop='anchor'``, :class:`AnchorLoop`), which ``--validate`` compares with them: one process, the
  script's optimizer and scaler, and the previous step's gradients alive through each forward.

:func:`estimate_peak` then replays the recorded allocations through a model of the CUDA caching allocator
(:mod:`convnext_dense.analysis.cuda_allocator`): the step twice, the second on the warm cache without the first step's
optimizer-state births and with what the loop kept from the first (for the anchors' loop, its gradients until
``zero_grad``); its peak of allocated blocks is what ``torch.cuda.max_memory_allocated`` reports, to which the cuBLAS
workspaces are added. Not modelled (the validation against H100 measurements, whose figures are in the README, bounds
what they add): cuDNN convolution workspaces and CUDA kernels' own temporaries.
"""
import contextlib
import weakref
from functools import partial
from typing import List, Optional

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_map

from ..engine.optimizers.precision import is_amp, without_amp
from . import benchmark as common
from .cuda_allocator import replay_as_run, steady_state_peak
from .memory_anchors import LOOP, anchor_samples
from .synthetic_batches import num_classes, synthetic_batch

BLOCK_BYTES = 512  # the CUDA caching allocator rounds every block up to a multiple of this
# cuBLAS workspaces, allocated through the caching allocator: one per cuBLAS handle and stream, and a training step
# uses two handles (the forward's thread and autograd's backward thread); PyTorch's default size on Hopper (sm90) is
# 32 MiB (CUBLAS_WORKSPACE_CONFIG=:4096:8), the card of the validation's measurements.
CUBLAS_WORKSPACES_BYTES = 2 * 32 * 2 ** 20
HALF = (torch.float16, torch.bfloat16)
aten = torch.ops.aten
# The compute of a training step: run in float32 when autocast hands them half precision (see _in_fp32).
FP32_COMPUTE = frozenset({aten.convolution.default, aten.convolution_backward.default, aten.mm.default,
                          aten.addmm.default, aten.bmm.default, aten.baddbmm.default})
# CUDA autocast's fp32 policy (aten/src/ATen/autocast_mode.h, AT_FORALL_FP32) minus what CPU autocast already runs in
# fp32, by Python function name (torch.*, torch.nn.functional.*, Tensor methods): half inputs are cast to float32.
CUDA_FP32 = frozenset({
    'acos', 'asin', 'cosh', 'erfinv', 'exp', 'expm1', 'log', 'log10', 'log2', 'log1p', 'reciprocal', 'rsqrt', 'sinh',
    'tan', 'pow', '__pow__', '__rpow__', 'softplus', 'layer_norm', 'group_norm', 'cosine_similarity', 'dist', 'pdist',
    'renorm', 'logsumexp'})
# CUDA's fp32_set_opt_dtype policy: the op runs with dtype=float32 when its input is half and no dtype was given.
CUDA_FP32_OUTPUT = frozenset({'softmax', 'log_softmax', 'cumsum', 'cumprod', 'sum', 'prod', 'norm',
                              'vector_norm', 'matrix_norm'})


def _in_fp32(func, args, kwargs):
    """``func`` (a convolution or matrix product) on float32 copies of its half-precision inputs, its outputs cast
    back: the same tensors, of the same sizes and dtypes, as the half-precision kernel returns, at float32 speed (CPUs
    without native bfloat16 run its convolutions many times slower). The copies are not tracked: a GPU makes none."""
    flat = tree_flatten((args, kwargs))[0]
    half = next((t.dtype for t in flat if isinstance(t, torch.Tensor) and t.dtype in HALF), None)
    if half is None:
        return func(*args, **kwargs)
    upcast = lambda t: t.float() if isinstance(t, torch.Tensor) and t.dtype == half else t  # noqa: E731
    out = func(*tree_map(upcast, args), **tree_map(upcast, kwargs))
    return tree_map(lambda t: t.to(half) if isinstance(t, torch.Tensor) and t.dtype == torch.float32 else t, out)


def block_bytes(nbytes: int) -> int:
    """What the CUDA caching allocator reserves for a tensor of ``nbytes`` (no block for an empty tensor)."""
    return -(-nbytes // BLOCK_BYTES) * BLOCK_BYTES


class StorageTracker(TorchDispatchMode):
    """Live and peak bytes of every tensor storage returned by an aten op while the mode is active."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = self.live_half = self.peak_half = 0
        self.phase = self.peak_phase = 'setup'
        self._keys = weakref.WeakKeyDictionary()  # storage -> its key in the events
        # ('alloc', key, nbytes, half, phase) / ('free', key) / ('drop_previous', keys), in order, for the allocator
        # model (convnext_dense.analysis.cuda_allocator.steady_state_peak)
        self.events: List[tuple] = []
        self.compute_in_fp32 = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FP32_COMPUTE and self.compute_in_fp32:
            out = _in_fp32(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self.track(tensor)
        return out

    def track(self, tensor: torch.Tensor):
        if tensor.layout != torch.strided or tensor.device.type == 'meta':
            return
        storage = tensor.untyped_storage()
        if storage in self._keys:
            return
        size = block_bytes(storage.nbytes())
        half = size if tensor.dtype in HALF else 0
        key = self._keys[storage] = len(self.events)
        self.events.append(('alloc', key, storage.nbytes(), bool(half), self.phase))
        weakref.finalize(storage, self._free, size, half, key)
        self.live += size
        self.live_half += half
        if self.live > self.peak:
            self.peak, self.peak_half, self.peak_phase = self.live, self.live_half, self.phase

    def _free(self, size: int, half: int, key: int):
        self.events.append(('free', key))
        self.live -= size
        self.live_half -= half

    def keys_of(self, tensors) -> List[int]:
        """The event keys of the tracked storages of ``tensors``, each once, in order."""
        keys = [self._keys.get(t.untyped_storage()) for t in tensors if isinstance(t, torch.Tensor)]
        return list(dict.fromkeys(key for key in keys if key is not None))

    def drop_previous(self) -> List[int]:
        """Mark where a training loop drops what its previous iteration left alive; the caller fills the returned
        list with the keys of those tensors as this iteration makes them (see ``steady_state_peak``)."""
        keys: List[int] = []
        self.events.append(('drop_previous', keys))
        return keys

    def reset_peak(self):
        self.peak, self.peak_half, self.peak_phase = self.live, self.live_half, self.phase

    @contextlib.contextmanager
    def in_phase(self, phase: str):
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous


class CudaFp32Policy(TorchFunctionMode):
    """Under CPU autocast, run in float32 what CUDA autocast runs in float32 (see CUDA_FP32, CUDA_FP32_OUTPUT).
    Only while autocast is on: it is off in backward, except where activation checkpointing recomputes a forward."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, '__name__', '')
        if (name in CUDA_FP32 or name in CUDA_FP32_OUTPUT) and torch.is_autocast_enabled('cpu'):
            tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            if any(t.dtype in HALF for t in tensors):
                if name in CUDA_FP32:
                    upcast = lambda t: t.float() if isinstance(t, torch.Tensor) and t.dtype in HALF else t  # noqa
                    args, kwargs = tree_map(upcast, args), tree_map(upcast, kwargs)
                elif kwargs.get('dtype') is None:
                    kwargs = dict(kwargs, dtype=torch.float32)
        return func(*args, **kwargs)


@contextlib.contextmanager
def cuda_autocast(enabled: bool):
    """CUDA's fp16/bf16 autocast, as far as tensor sizes go, on a CPU (see the module docstring)."""
    if not enabled:
        yield
        return
    with torch.autocast('cpu', dtype=torch.bfloat16), CudaFp32Policy():
        yield


@contextlib.contextmanager
def policy_in_recomputation():
    """Activation checkpointing (``with_cp``) recomputes a block's forward during backward under the forward's
    autocast, but outside torch-function modes: without :class:`CudaFp32Policy` there, a LayerNorm recomputes in
    half precision, and PyTorch refuses the mismatch. Non-reentrant checkpoints take the policy through their
    ``context_fn``; reentrant ones (mmdet's Swin) offer no hook, so their recomputation keeps CPU autocast's dtypes
    (its transient tensors, not what the forward saved)."""
    import torch.utils.checkpoint as checkpointing
    original = checkpointing.checkpoint

    def checkpoint(function, *args, use_reentrant=None, **kwargs):
        if use_reentrant is False and 'context_fn' not in kwargs:
            kwargs['context_fn'] = lambda: (contextlib.nullcontext(), CudaFp32Policy())
        return original(function, *args, use_reentrant=use_reentrant, **kwargs)

    checkpointing.checkpoint = checkpoint
    try:
        yield
    finally:
        checkpointing.checkpoint = original


def _fp32_call(function):
    """``function`` (an mmcv C++ op) on float32 copies of its half-precision tensors, written back afterwards (the
    op writes its outputs in place), all outside the tracker: on a GPU the op runs in half precision directly."""

    def call(*args, **kwargs):
        flat, spec = tree_flatten((args, kwargs))
        halves = [i for i, t in enumerate(flat) if isinstance(t, torch.Tensor) and t.dtype in HALF]
        if not halves:
            return function(*args, **kwargs)
        with _disable_current_modes():
            copies = list(flat)
            for i in halves:
                copies[i] = flat[i].float()
            args32, kwargs32 = spec.unflatten(copies)
            result = function(*args32, **kwargs32)
            for i in halves:  # through .data: no version bump, the inputs saved for backward are unchanged
                flat[i].data.copy_(copies[i])
        return result

    return call


@contextlib.contextmanager
def mmcv_ops_in_fp32():
    """mmcv's CPU kernels (RoIAlign, NMS, ...) take no half precision, which CUDA autocast hands them: let them."""
    import importlib
    ext = importlib.import_module('mmcv._ext')
    originals = {name: getattr(ext, name) for name in dir(ext)
                 if not name.startswith('_') and callable(getattr(ext, name))}
    try:
        for name, function in originals.items():
            setattr(ext, name, _fp32_call(function))
        yield
    finally:
        for name, function in originals.items():
            setattr(ext, name, function)


def emulated_optim_wrapper_cls():
    """An OptimWrapper whose forward runs under :func:`cuda_autocast` and whose phases the tracker records."""
    from mmengine.optim import OptimWrapper

    class EmulatedGpuOptimWrapper(OptimWrapper):

        tracker: StorageTracker
        amp: bool

        @contextlib.contextmanager
        def optim_context(self, model):
            with super().optim_context(model), cuda_autocast(self.amp), self.tracker.in_phase('forward'):
                yield

        def backward(self, loss, **kwargs):
            with self.tracker.in_phase('backward'):
                super().backward(loss, **kwargs)

        def step(self, **kwargs):
            with self.tracker.in_phase('optimizer'):
                super().step(**kwargs)

    return EmulatedGpuOptimWrapper


def build_emulated_optim_wrapper(cfg, model, tracker: StorageTracker, amp: Optional[bool]):
    """The config's optim_wrapper (constructor, param groups), AMP as the config asks unless ``amp`` says otherwise.
    Its type becomes :func:`emulated_optim_wrapper_cls`, which does the autocast itself on the CPU, so the AMP-only
    arguments are dropped."""
    from mmengine.optim import build_optim_wrapper
    amp = is_amp(cfg.optim_wrapper) if amp is None else amp
    wrapper_cfg = without_amp(cfg.optim_wrapper, emulated_optim_wrapper_cls())
    if 'foreach' not in wrapper_cfg.optimizer:
        wrapper_cfg.optimizer.foreach = True  # what torch picks for CUDA parameters, and its temporaries
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    # Set here, not in the config: a config deep-copies what it holds.
    optim_wrapper.tracker, optim_wrapper.amp = tracker, amp
    return optim_wrapper, amp


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    storages = {}
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                storages[id(value.untyped_storage())] = block_bytes(value.untyped_storage().nbytes())
    return sum(storages.values())


class AnchorLoop:
    """The training loop that measured the memory anchors (:mod:`.memory_anchors`), one iteration per call, under
    the tracker, for ``estimate_peak(..., loop='anchor')``: no DDP and no data preprocessor, a random float32 batch
    and the script's data samples (:func:`~.memory_anchors.anchor_samples`) straight into
    ``model(x, samples, mode='loss')`` under fp16 autocast (:func:`cuda_autocast`), the losses summed outside it,
    ``torch.optim.AdamW`` over ``model.parameters()`` with the script's arguments (one parameter group;
    ``foreach=True``, as PyTorch picks for CUDA tensors) behind a ``GradScaler``, and ``zero_grad(set_to_none=True)``
    after the forward, before the backward.

    What the loop's variables still hold at the end of an iteration lives on into the next one, and the trace says
    where that one drops it (:meth:`StorageTracker.drop_previous`): the previous input as the new one is made, the
    previous samples, losses and loss as theirs are, and the previous step's gradients at ``zero_grad``, so they are
    alive through the whole forward. A second call frees them there, as the loop does; of a single traced iteration,
    the allocator replay (``steady_state_peak``) frees them there in its second pass."""

    def __init__(self, model: torch.nn.Module, tracker: StorageTracker, batch_size: int, shape: tuple, seed: int,
                 classes: int):
        self.model, self.tracker, self.batch_size, self.shape = model, tracker, batch_size, shape
        self.classes = min(classes, LOOP['classes'])  # the script's labels, where the model has as many classes
        self.amp = LOOP['amp'] in ('fp16', 'bf16')
        self.optimizer = torch.optim.AdamW(model.parameters(), **LOOP['optimizer'], foreach=True)
        self.scaler = torch.amp.GradScaler('cpu', enabled=LOOP['amp'] == 'fp16')
        self.rng = np.random.default_rng(seed)
        self.kept: dict = {}  # what the loop's variables hold after an iteration, by name
        self.drops: dict = {}  # the drop_previous marks of the iteration, by name

    def __call__(self):
        """One iteration; called again, the next one, dropping what this one left where the script's loop drops it."""
        x = torch.randn(self.batch_size, 3, *self.shape)
        self._drop_previous('x')
        samples = anchor_samples(self.batch_size, self.shape, self.rng, classes=self.classes)
        self._drop_previous('samples')
        with cuda_autocast(self.amp), self.tracker.in_phase('forward'):
            losses = self.model(x, samples, mode='loss')
        self._drop_previous('losses')
        with self.tracker.in_phase('forward'):
            loss = sum(v.sum() if torch.is_tensor(v) else sum(t.sum() for t in v)
                       for k, v in losses.items() if 'loss' in k)
        self._drop_previous('loss')
        self._drop_previous('grads')
        self.optimizer.zero_grad(set_to_none=True)
        with self.tracker.in_phase('backward'):
            self.scaler.scale(loss).backward()
        with self.tracker.in_phase('optimizer'):
            self.scaler.step(self.optimizer)
            self.scaler.update()
        kept = dict(x=[x], samples=[t for s in samples for t in s.gt_instances.values() if torch.is_tensor(t)],
                    losses=tree_flatten(dict(losses))[0], loss=[loss],
                    grads=[p.grad for p in self.model.parameters() if p.grad is not None])
        for name, keys in self.drops.items():
            keys.extend(self.tracker.keys_of(kept[name]))
        del kept['grads']  # the parameters hold them until the next zero_grad
        self.kept = kept

    def _drop_previous(self, name: str):
        """The loop's variable ``name`` takes this iteration's value: the previous one is freed, and the trace marks
        the place."""
        self.kept.pop(name, None)
        self.drops[name] = self.tracker.drop_previous()


LOOPS = ('runner', 'anchor')


def estimate_peak(cfg, batch_size: int, shape: tuple, seed: int = 0, amp: Optional[bool] = None,
                  launcher: str = 'pytorch', loop: str = 'runner', iterations: int = 1) -> dict:
    """Build ``cfg``'s model (random weights) and run one training step under the tracker; return the predicted
    peak of allocated GPU memory of one GPU and its parts, in bytes.

    ``loop='runner'``: the step of a ``tools/train.py`` run, ``train_step`` on a synthetic batch with the config's own
    optim_wrapper (AMP as the config asks unless ``amp`` says otherwise), the model wrapped as ``launcher`` has
    mmengine wrap it (:func:`~convnext_dense.analysis.benchmark.wrap_as_launched`), the peak that of a steady-state
    step, as the GPU benchmark measures after its warm-up. ``loop='anchor'``: an iteration of the loop that measured
    the memory anchors (:class:`AnchorLoop`; ``launcher`` must be ``'none'``, ``amp`` is the anchors'), the peak over
    its first and its steady-state iterations, as that loop measured it; with ``iterations`` above one, that many
    iterations run as the loop runs them (each drawing its own data, the weights training), the peak over all of
    them."""
    if loop not in LOOPS:
        raise ValueError(f'loop must be one of {LOOPS}, got {loop!r}')
    if loop == 'anchor' and launcher != 'none':
        raise ValueError("the anchors' loop is a single process without DDP: launcher must be 'none'")
    if iterations != 1 and (loop != 'anchor' or iterations < 1):
        raise ValueError(f"iterations={iterations}: only the anchors' loop runs more than one")
    torch.manual_seed(seed)
    tracker = StorageTracker()
    cpu = torch.device('cpu')
    with tracker, mmcv_ops_in_fp32(), policy_in_recomputation(), common.process_group_for(launcher, cpu):
        model = common.build_model(cfg, cpu).train()
        if loop == 'anchor':
            step = AnchorLoop(model, tracker, batch_size, shape, seed, num_classes(cfg))
            optimizer, amp, ddp_buckets = step.optimizer, step.amp, 0
        else:
            optim_wrapper, amp = build_emulated_optim_wrapper(cfg, model, tracker, amp)
            before_wrapping = tracker.live
            wrapped = common.wrap_as_launched(cfg, model, launcher, cpu)
            ddp_buckets = tracker.live - before_wrapping
            batch = synthetic_batch(cfg, batch_size, shape, np.random.default_rng(seed))
            step, optimizer = partial(wrapped.train_step, batch, optim_wrapper), optim_wrapper.optimizer
            del wrapped
        static, ends = tracker.live, [len(tracker.events)]
        for _ in range(iterations):
            step()
            ends.append(len(tracker.events))
        steps = [tracker.events[start:end] for start, end in zip(ends, ends[1:])]
        del step  # a DDP model holds the process group
    setup = tracker.events[:ends[0]]
    replay = (replay_as_run(setup, steps) if iterations > 1 else
              steady_state_peak(setup, steps[0], count_first_step=loop == 'anchor'))
    params = sum(block_bytes(p.untyped_storage().nbytes()) for p in model.parameters())
    grads = sum(block_bytes(p.untyped_storage().nbytes()) for p in model.parameters() if p.requires_grad)
    state = state_bytes(optimizer)
    return dict(estimated_peak_bytes=replay.allocated_peak + CUBLAS_WORKSPACES_BYTES,
                tensors_at_peak_bytes=replay.tensors_peak, ddp_buckets_bytes=ddp_buckets,
                previous_iteration_at_peak_bytes=replay.previous_at_peak, launcher=launcher, loop=loop,
                iterations=iterations,
                allocator_rounding_bytes=replay.allocated_peak - replay.tensors_peak,
                cublas_workspaces_bytes=CUBLAS_WORKSPACES_BYTES,
                reserved_bytes=replay.reserved + CUBLAS_WORKSPACES_BYTES, peak_phase=replay.phase_at_peak,
                half_precision_at_peak_bytes=replay.half_at_peak, amp=amp, params_bytes=params, grads_bytes=grads,
                optimizer_state_bytes=state, static_bytes=static + state, params_m=common.num_params_m(model))
