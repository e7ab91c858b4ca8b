"""Mixed precision in an ``optim_wrapper`` config: whether it asks for AMP, and the same config without it.

AMP (mmengine's ``AmpOptimWrapper``) needs CUDA. Where a run has no GPU (tools/train.py and tools/test.py on a CPU,
the CPU benchmarks) or emulates a GPU's precision itself (the memory estimate), the wrapper is swapped for another and
the arguments only ``AmpOptimWrapper`` takes are dropped: this module is the one place that knows them.
"""
import copy

# The arguments AmpOptimWrapper takes beyond OptimWrapper's (mmengine 0.10.x).
AMP_ONLY_ARGS = ('loss_scale', 'dtype', 'use_fsdp')


def is_amp(optim_wrapper_cfg) -> bool:
    """Whether the config's wrapper is mmengine's ``AmpOptimWrapper`` or a subclass (given by name or class)."""
    from mmengine.optim import AmpOptimWrapper
    from mmengine.registry import OPTIM_WRAPPERS
    wrapper_type = optim_wrapper_cfg.get('type', 'OptimWrapper')
    wrapper_cls = OPTIM_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) else wrapper_type
    return isinstance(wrapper_cls, type) and issubclass(wrapper_cls, AmpOptimWrapper)


def without_amp(optim_wrapper_cfg, wrapper_type='OptimWrapper'):
    """A copy of ``optim_wrapper_cfg`` of type ``wrapper_type`` (a name or a class) without the AMP-only arguments; the
    optimizer, constructor and paramwise settings are kept as they are."""
    cfg = copy.deepcopy(optim_wrapper_cfg)
    for key in AMP_ONLY_ARGS:
        cfg.pop(key, None)
    cfg['type'] = wrapper_type
    return cfg
