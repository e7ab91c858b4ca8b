"""Numerical faults: a non-finite loss stops training before it is checkpointed; fp16 inference of the backbone stays
finite and close to fp32 on large activations."""
import copy

import pytest
import torch
from conftest import ToyModel, randomize_, toy_train_dataloader
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner import Runner

from convnext_dense import ConvNeXt
from convnext_dense.engine.hooks.finite_loss_hook import NonFiniteLossError


@OPTIM_WRAPPERS.register_module(force=True)
class CpuLossScaleOptimWrapper(OptimWrapper):
    """What AmpOptimWrapper does to a step (it needs a GPU): a dynamic loss scaler skips steps whose gradients are
    not finite and lowers the scale."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.**8)

    def update_params(self, loss, step_kwargs=None, zero_kwargs=None):
        self.loss_scaler.scale(loss).backward()
        self.loss_scaler.step(self.optimizer)
        self.loss_scaler.update()
        self.optimizer.zero_grad()


def toy_runner(tmp_path, bad, optim_type='OptimWrapper', amp_patience=10, check=True):
    return Runner(
        model=ToyModel(), work_dir=str(tmp_path),
        train_dataloader=toy_train_dataloader(bad),
        optim_wrapper=dict(type=optim_type, optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=8),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False), logger=None),
        custom_hooks=[dict(type='CheckFiniteLossHook', amp_patience=amp_patience)] if check else None)


def test_nan_loss_stops_fp32_training_naming_the_iteration_and_keeps_the_last_checkpoint_finite(tmp_path):
    runner = toy_runner(tmp_path, bad=[3])
    with pytest.raises(NonFiniteLossError, match=r'iteration 4: loss=inf, loss_toy=inf\..*iter_3\.pth.*img3\.jpg'):
        runner.train()
    assert sorted(p.name for p in tmp_path.glob('iter_*.pth')) == ['iter_1.pth', 'iter_2.pth', 'iter_3.pth']
    last = torch.load(tmp_path / 'iter_3.pth', weights_only=False)['state_dict']
    assert all(torch.isfinite(v).all() for v in last.values())
    # Without the hook the same run goes on to the end, saving NaN weights: what the hook is there to prevent.
    toy_runner(tmp_path / 'plain', bad=[3], check=False).train()
    assert not torch.isfinite(torch.load(tmp_path / 'plain' / 'iter_8.pth', weights_only=False)
                              ['state_dict']['linear.weight']).all()


def test_loss_scaler_skips_a_few_non_finite_steps_and_the_run_stops_when_they_persist(tmp_path):
    # Two bad steps in a row: skipped by the scaler, weights stay finite, training completes.
    runner = toy_runner(tmp_path / 'transient', bad=[2, 3], optim_type='CpuLossScaleOptimWrapper')
    runner.train()
    assert runner.iter == 8 and torch.isfinite(runner.model.linear.weight).all()
    # Four in a row with a patience of three: stops at the fourth.
    runner = toy_runner(tmp_path / 'persistent', bad=[2, 3, 4, 5], optim_type='CpuLossScaleOptimWrapper',
                        amp_patience=3)
    with pytest.raises(NonFiniteLossError, match='iteration 6 .*for 4 iterations in a row'):
        runner.train()


def large_activation_backbone(version):
    """Random weights scaled so the residual stream reaches ~1000: squares (LayerNorm variance, GRN norm) overflow
    fp16, while the activations themselves fit."""
    model = randomize_(ConvNeXt('atto', version=version, out_indices=(0, 1, 2, 3))).eval()
    with torch.no_grad():
        for block in (b for stage in model.stages for b in stage):
            (block.gamma if version == 1 else block.pwconv2.weight).mul_(20)
    return model


@pytest.mark.parametrize('version', [1, 2])
def test_fp16_backbone_inference_is_finite_and_close_to_fp32_on_large_activations(version):
    model = large_activation_backbone(version)
    peaks = []
    hooks = [b.register_forward_hook(lambda m, i, o: peaks.append(o.abs().max().item()))
             for stage in model.stages for b in stage]
    x = torch.randn(1, 3, 64, 96) * 100
    with torch.no_grad():
        expected = model(x)
    for hook in hooks:
        hook.remove()
    assert 256 < max(peaks) < torch.finfo(torch.float16).max, 'activations whose squares overflow fp16 but fit it'

    half = copy.deepcopy(model).half()
    with torch.no_grad():
        results = {'half()': half(x.half())}
        with torch.autocast('cpu', dtype=torch.float16):
            results['autocast fp16'] = model(x)
    for mode, outputs in results.items():
        for i, (out, ref) in enumerate(zip(outputs, expected)):
            assert torch.isfinite(out).all(), f'{mode}: output {i} not finite'
            assert ((out.float() - ref).norm() / ref.norm()).item() < 5e-3, f'{mode}: output {i} far from fp32'
