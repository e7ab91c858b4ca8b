"""convnext_dense.analysis.benchmark: the timing loop and the one-process group of the shared harness."""
import time

import torch

import convnext_dense.apis.runner_setup as runner_setup
from convnext_dense.analysis.benchmark import process_group_for, time_steps, timing_summary

CPU = torch.device('cpu')


def test_time_steps_times_the_step_alone_after_the_warm_up():
    calls = []

    def make_input():
        time.sleep(0.05)  # untimed: a copy of the batch
        calls.append('input')
        return len(calls)

    def step(data):
        calls.append(('step', data))

    times = time_steps(step, make_input, warmup=2, iters=3, device=CPU)
    assert len(times) == 3 and all(0 <= t < 0.05 for t in times)
    assert [c for c in calls if c != 'input'] == [('step', n) for n in (1, 3, 5, 7, 9)], 'each step on a fresh input'
    summary = timing_summary([3.0, 1.0, 2.0], 'step')
    assert summary == dict(step_median_s=2.0, step_mean_s=2.0, step_times_s=[3.0, 1.0, 2.0])


def test_process_group_for_ends_only_the_group_it_created(monkeypatch):
    ended = []
    end_distributed = runner_setup.end_distributed
    monkeypatch.setattr(runner_setup, 'end_distributed', lambda: ended.append(1) or end_distributed())
    dist = torch.distributed
    with process_group_for('none', CPU):
        assert not dist.is_initialized()
    assert ended == []
    with process_group_for('pytorch', CPU):
        assert dist.is_initialized() and dist.get_world_size() == 1
        with process_group_for('pytorch', CPU):  # the group exists: used, not replaced, not ended
            assert dist.is_initialized()
        assert dist.is_initialized() and ended == []
    assert ended == [1] and not dist.is_initialized(), 'ended as a training run ends it'
