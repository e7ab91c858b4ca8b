"""The CPU estimate of peak GPU training memory: exact storage accounting on tensors whose sizes are known, CUDA's
autocast policy emulated on the CPU, mmcv's C++ ops fed half precision, the loop that measured the H100 anchors (its
data, the gradients it keeps through the forward, one iteration replayed as the loop runs), and `--estimate` end to
end on a tiny config. (The validation against H100 measurements is
`tools/analysis_tools/benchmark_memory.py --estimate --validate`: minutes per config.)"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convnext_dense.analysis import benchmark, memory_estimate
from convnext_dense.analysis.cuda_allocator import CachingAllocatorModel, replay_as_run, steady_state_peak
from convnext_dense.analysis.memory_anchors import ANCHORS, anchor_samples, validation_rows
from convnext_dense.analysis.memory_estimate import (
    AnchorLoop,
    StorageTracker,
    block_bytes,
    cuda_autocast,
    estimate_peak,
    mmcv_ops_in_fp32,
    policy_in_recomputation,
    state_bytes,
)

ROOT = Path(__file__).resolve().parents[3]
TOOL = 'tools/analysis_tools/benchmark_memory.py'


def test_storages_are_counted_once_in_allocator_blocks_until_freed():
    with StorageTracker() as tracker:
        a = torch.empty(1000)  # 4000 bytes: 8 blocks of 512
        view = a[10:].view(-1, 10)  # same storage: nothing new
        b = torch.ones(10, dtype=torch.float16)  # 20 bytes: one block
        assert tracker.live == 4096 + 512
        del a
        assert tracker.live == 4096 + 512, 'the view keeps the storage alive'
        del view
        assert tracker.live == 512
        c = torch.zeros(3000, dtype=torch.uint8)  # 3000 bytes: 6 blocks
    assert tracker.peak == 4096 + 512 and tracker.live == 512 + 3072
    assert tracker.live_half == 512
    del b, c
    assert tracker.live == 0 and tracker.live_half == 0
    assert [block_bytes(n) for n in (0, 1, 512, 513)] == [0, 512, 512, 1024]


def test_peak_of_a_training_step_is_params_grads_state_and_saved_activations():
    """Linear 256->512 (no bias) on 64 rows, loss sum(relu(y)): the peak is known tensor by tensor."""
    torch.manual_seed(0)
    weight_bytes, rows_bytes = 512 * 256 * 4, 64 * 512 * 4
    with StorageTracker() as tracker:
        model = torch.nn.Linear(256, 512, bias=False)
        optimizer = torch.optim.AdamW(model.parameters(), foreach=True)
        x = torch.randn(64, 256)
        tracker.reset_peak()
        with tracker.in_phase('forward'):
            y = model(x)  # saved: x (input of mm); y is saved by relu as its output
            loss = torch.relu(y).sum()
        assert tracker.live == weight_bytes + 64 * 256 * 4 + 2 * rows_bytes + 512
        del y
        with tracker.in_phase('backward'):
            loss.backward()
        assert model.weight.grad.untyped_storage().nbytes() == weight_bytes
        optimizer.step()
    assert state_bytes(optimizer) == 2 * weight_bytes + 512  # exp_avg, exp_avg_sq, step
    # Before the optimizer: weight, x, relu's output and y, the loss, then weight's gradient on top.
    assert tracker.peak >= weight_bytes * 2 + 64 * 256 * 4 + rows_bytes
    # The optimizer's own peak holds weight, gradient and both moments at least.
    assert tracker.peak >= 4 * weight_bytes


def test_autocast_emulation_follows_cudas_policy_and_caches_weight_copies():
    linear = torch.nn.Linear(64, 64)
    x = torch.randn(8, 64)
    with StorageTracker() as tracker, cuda_autocast(True):
        y = linear(x)
        after_first = tracker.live
        z = linear(x)
        # The second use reuses the cached half copies of weight and bias: only the input's cast (no weight: not
        # cached) and the output are new.
        assert tracker.live - after_first == 2 * block_bytes(8 * 64 * 2)
        assert y.dtype == z.dtype == torch.bfloat16, 'matmul family: half precision, as CUDA autocast'
        assert F.layer_norm(y, (64,)).dtype == torch.float32, 'layer_norm: float32 on CUDA (CPU would keep half)'
        assert F.softmax(y, dim=-1).dtype == torch.float32 and y.softmax(-1).dtype == torch.float32
        assert y.sum().dtype == torch.float32 and torch.exp(y).dtype == torch.float32
        assert F.gelu(y).dtype == torch.bfloat16, 'not on any list: the input dtype'
    with cuda_autocast(False):
        assert linear(x).dtype == torch.float32


def test_convolutions_compute_in_fp32_and_return_what_the_half_kernel_returns(monkeypatch):
    """Convolutions and matrix products run on float32 copies of their half-precision inputs and return half
    precision: the same tensors, sizes and dtypes as the bfloat16 kernels, so the accounting is unchanged."""
    seen = []

    def fake_kernel(*args, **kwargs):
        seen.append({t.dtype for t in args if isinstance(t, torch.Tensor)})
        return args[0] * 2, args[0].sum()

    a = torch.ones(4, 4, dtype=torch.bfloat16)
    out = memory_estimate._in_fp32(fake_kernel, (a, torch.ones(4, 4, dtype=torch.bfloat16), 3), {})
    assert seen == [{torch.float32}] and all(t.dtype == torch.bfloat16 for t in out)

    routed = []
    in_fp32 = memory_estimate._in_fp32
    monkeypatch.setattr(memory_estimate, '_in_fp32', lambda func, *a: routed.append(func.name()) or in_fp32(func, *a))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GELU(), torch.nn.Flatten(), torch.nn.Linear(1568, 4))
    x = torch.randn(2, 3, 16, 16)
    runs = {}
    for compute_in_fp32 in (False, True):
        net.zero_grad(set_to_none=True)
        with StorageTracker() as tracker, cuda_autocast(True):
            tracker.compute_in_fp32 = compute_in_fp32
            out = net(x)
            out.float().sum().backward()
        runs[compute_in_fp32] = (tracker.peak, out.dtype, net[0].weight.grad.clone())
    assert {'aten::convolution', 'aten::convolution_backward', 'aten::addmm', 'aten::mm'} <= set(routed)
    assert runs[True][:2] == runs[False][:2] and runs[True][1] == torch.bfloat16
    assert torch.allclose(runs[True][2], runs[False][2], rtol=0.02, atol=0.02)


def test_activation_checkpointing_recomputes_under_cudas_autocast_policy():
    """with_cp recomputes each block in backward: LayerNorm must come out in float32 there as in the forward (PyTorch
    refuses a recomputation whose dtypes differ), and the blocks' activations are no longer held."""
    from convnext_dense.analysis.benchmark import load_benchmark_config
    peaks = {}
    for with_cp in (False, True):
        cfg = load_benchmark_config(str(ROOT / 'tests/data/bench_mask_rcnn_convnext_atto.py'),
                                    {'model.backbone.with_cp': with_cp})
        estimate = estimate_peak(cfg, 2, (256, 320))
        assert estimate['amp'], 'the config asks for AMP: the policy is in play'
        peaks[with_cp] = estimate['tensors_at_peak_bytes']
    assert peaks[True] < 0.8 * peaks[False]


def test_mmcv_cpu_ops_take_half_precision_inputs():
    from mmcv.ops import nms, roi_align
    feats = torch.rand(1, 4, 16, 16, dtype=torch.bfloat16, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 9.0, 9.0]])
    with pytest.raises(NotImplementedError, match='BFloat16'):
        roi_align(feats, rois.to(torch.bfloat16), (7, 7), 1.0, 0)
    with mmcv_ops_in_fp32():
        out = roi_align(feats, rois.to(torch.bfloat16), (7, 7), 1.0, 0)
        out.float().sum().backward()
        boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.bfloat16)
        _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7], dtype=torch.bfloat16), 0.5)
    reference = roi_align(feats.detach().float(), rois, (7, 7), 1.0, 0)
    assert out.dtype == torch.bfloat16 and torch.allclose(out.float(), reference, atol=1e-2)
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert keep.tolist() == [0, 2]


@pytest.mark.parametrize('as_view', [False, True])
def test_distributed_runs_hold_ddp_gradient_buckets_beside_or_as_the_gradients(as_view):
    """What a GPU of a distributed run holds and a single-process run does not: DDP's gradient buckets, one more copy
    of the trainable parameters' gradients (the gradients themselves unless gradient_as_bucket_view)."""
    from mmengine.config import Config
    cfg = Config(dict(model_wrapper_cfg=dict(gradient_as_bucket_view=True)) if as_view else {})
    with StorageTracker() as tracker, benchmark.process_group_for('pytorch', torch.device('cpu')):
        model = torch.nn.Sequential(torch.nn.Linear(500, 1000), torch.nn.Linear(1000, 3000))
        model[0].weight.requires_grad_(False)
        trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
        before = tracker.live
        wrapped = benchmark.wrap_as_launched(cfg, model, 'pytorch', torch.device('cpu'))
        assert type(wrapped).__name__ == 'MMDistributedDataParallel'
        assert tracker.live - before == pytest.approx(trainable, abs=4 * 512), 'the buckets: trainable params only'
        before = tracker.live
        wrapped(torch.randn(4, 500)).sum().backward()
        grads = tracker.live - before
        del wrapped
    assert grads == pytest.approx(0 if as_view else trainable, abs=4 * 512)
    assert not torch.distributed.is_initialized(), 'the one-process group is destroyed on exit'
    assert benchmark.wrap_as_launched(cfg, model, 'none', torch.device('cpu')) is model


ATTO = str(ROOT / 'tests/data/bench_mask_rcnn_convnext_atto.py')


def test_anchor_samples_are_the_measuring_scripts_draws():
    """Per image: corners, then sides, then labels, from the script's generator; rectangular masks filling the
    boxes; the image is its own unpadded batch input."""
    samples = anchor_samples(2, (96, 192), np.random.default_rng(0))
    rng = np.random.default_rng(0)
    for sample in samples:
        x1, y1 = rng.uniform(0, 192 - 64, 7), rng.uniform(0, 96 - 64, 7)
        w, h = rng.uniform(32, 192 / 3, 7), rng.uniform(32, 96 / 3, 7)
        boxes = np.stack([x1, y1, np.minimum(x1 + w, 191), np.minimum(y1 + h, 95)], 1).astype(np.float32)
        gt = sample.gt_instances
        assert torch.equal(gt.bboxes, torch.from_numpy(boxes)) and gt.bboxes.dtype == torch.float32
        assert torch.equal(gt.labels, torch.from_numpy(rng.integers(0, 80, 7)))
        left, top, right, bottom = boxes[0].astype(int)
        mask = gt.masks.masks[0]
        assert mask.sum() == mask[top:bottom, left:right].sum() == (right - left) * (bottom - top) > 0
        assert sample.metainfo['batch_input_shape'] == sample.metainfo['pad_shape'] == (96, 192)


def test_one_anchor_loop_iteration_replays_as_the_loop_runs():
    """The replay of one traced iteration, with what it leaves to the next (marked by drop_previous), gives the
    peak of the real loop run for three iterations (the same input, boxes and weights in each, so that they are
    alike): the marks stand exactly where the loop frees the previous iteration's tensors."""
    cfg = benchmark.load_benchmark_config(ATTO, {})
    torch.manual_seed(0)
    with StorageTracker() as tracker, mmcv_ops_in_fp32(), policy_in_recomputation():
        model = benchmark.build_model(cfg, torch.device('cpu')).train()
        loop = AnchorLoop(model, tracker, 2, (128, 160), 0, 8)
        for group in loop.optimizer.param_groups:
            group['lr'] = 0.0  # the same weights, hence the same proposals and RoIs, in every iteration
        ends = [len(tracker.events)]
        for _ in range(3):
            torch.manual_seed(1)
            loop.rng = np.random.default_rng(0)
            loop()
            ends.append(len(tracker.events))
    events = tracker.events
    replay = steady_state_peak(events[:ends[0]], events[ends[0]:ends[1]], count_first_step=True)
    allocator, blocks = CachingAllocatorModel(), {}
    for event in events[:ends[-1]]:  # as it ran: its own frees, the marks ignored
        if event[0] == 'alloc' and event[2] > 0:
            blocks[event[1]] = allocator.malloc(event[2])
        elif event[0] == 'free' and event[1] in blocks:
            allocator.free(blocks.pop(event[1]))
    assert replay.allocated_peak == allocator.peak
    as_run = replay_as_run(events[:ends[0]], [events[start:end] for start, end in zip(ends, ends[1:])])
    # the same peaks, tensors, phase and what the previous iteration left (a third iteration may cut a segment more)
    assert as_run._replace(reserved=0) == replay._replace(reserved=0) and as_run.reserved >= replay.reserved
    grads = sum(block_bytes(p.numel() * 4) for p in model.parameters())
    assert replay.previous_at_peak >= grads, "the previous step's gradients are alive at the peak"


def test_the_anchor_loop_holds_the_previous_gradients_through_the_forward(monkeypatch):
    """The anchors' loop zeroes the gradients after the forward: at its peak (in the forward) it holds one float32
    copy of the parameters more than the same loop zeroing them before the forward, and no DDP buckets."""

    class ZeroGradFirst(AnchorLoop):
        def _drop_previous(self, name):
            if name != 'grads':
                super()._drop_previous(name)
            if name == 'x':  # right after the new input: the gradients go before the forward
                super()._drop_previous('grads')
                self.optimizer.zero_grad(set_to_none=True)

    cfg = benchmark.load_benchmark_config(ATTO, {})
    shape = (256, 320)  # activations large enough for the forward to hold the peak, not the optimizer step
    anchor = estimate_peak(cfg, 2, shape, launcher='none', loop='anchor')
    monkeypatch.setattr(memory_estimate, 'AnchorLoop', ZeroGradFirst)
    zeroed = estimate_peak(cfg, 2, shape, launcher='none', loop='anchor')
    assert anchor['loop'] == 'anchor' and anchor['ddp_buckets_bytes'] == zeroed['ddp_buckets_bytes'] == 0
    assert anchor['peak_phase'] == zeroed['peak_phase'] == 'forward' and anchor['amp']
    assert anchor['tensors_at_peak_bytes'] - zeroed['tensors_at_peak_bytes'] == anchor['grads_bytes']
    # the previous gradients, and the previous iteration's loss scalars (one 512-byte block each)
    assert 0 <= anchor['previous_iteration_at_peak_bytes'] - anchor['grads_bytes'] < 64 * 512
    assert zeroed['previous_iteration_at_peak_bytes'] < 64 * 512
    with pytest.raises(ValueError, match="launcher must be 'none'"):
        estimate_peak(cfg, 2, (128, 160), loop='anchor')
    with pytest.raises(ValueError, match="only the anchors' loop runs more than one"):
        estimate_peak(cfg, 2, (128, 160), iterations=2)


def test_validation_rows_check_errors_and_convnext_swin_ratios():
    exact = {name: anchor[2] for name, anchor in ANCHORS.items()}
    assert all(row['ok'] for row in validation_rows(exact))
    # ConvNeXt-T 4% high and Swin-T 4% low: each within 5%, but the ratio is off by far more than 0.02.
    skewed = dict(exact, cascade_convnext_t=exact['cascade_convnext_t'] * 1.04,
                  cascade_swin_t=exact['cascade_swin_t'] * 0.96)
    rows = {row['name']: row for row in validation_rows(skewed)}
    assert rows['cascade_swin_t']['ok'] and not rows['cascade_convnext_t']['ok']
    assert rows['cascade_convnext_t']['error'] == pytest.approx(0.04)
    assert not validation_rows(dict(exact, cascade_swin_s=exact['cascade_swin_s'] * 1.06))[3]['ok'], '6% is out'
    missing = {row['name']: row for row in validation_rows({})}
    assert not missing['mask_rcnn_convnext_t']['ok'] and missing['mask_rcnn_convnext_t']['error'] is None


@pytest.mark.slow
def test_estimate_mode_end_to_end(tmp_path):
    config = 'tests/data/bench_mask_rcnn_convnext_atto.py'
    proc = subprocess.run([sys.executable, TOOL, '--estimate', config, '--shape', '128', '160',
                           '--out-dir', str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'ESTIMATE of peak GPU memory' in proc.stdout and 'estimated peak (GiB)' in proc.stdout
    payload = json.loads((tmp_path / 'benchmark_memory.json').read_text())
    assert payload['memory_metric'] == 'estimated_gpu_peak_allocated'
    result, = payload['results']
    assert result['status'] == 'ok' and result['precision'].startswith('amp'), 'the config asks for AMP'
    # AdamW: parameters plus two moments at least; the step adds gradients and activations on top.
    assert result['static_gib'] >= 3 * result['params_gib'] > 0
    assert result['estimated_peak_gib'] > result['static_gib'] + result['grads_gib']
    # its parts: the tensors, what the allocator's blocks hold beyond them, the cuBLAS workspaces (2 x 32 MiB)
    assert result['estimated_peak_gib'] == pytest.approx(
        result['tensors_at_peak_gib'] + result['allocator_rounding_gib'] + result['cublas_workspaces_gib'])
    assert result['cublas_workspaces_gib'] == 1 / 16 and result['reserved_gib'] >= result['estimated_peak_gib']
    assert result['half_precision_at_peak_gib'] > 0 or result['peak_phase'] == 'optimizer'
    # one GPU of a distributed run (the default): DDP's buckets, a second copy of the gradients, for the whole step
    assert 'a prediction until a GPU has measured one' in proc.stdout
    assert result['launcher'] == 'pytorch' and result['loop'] == 'runner'
    assert result['ddp_buckets_gib'] == pytest.approx(result['grads_gib'], rel=0.01)

    proc = subprocess.run([sys.executable, TOOL, '--estimate', config, '--shape', '128', '160',
                           '--launcher', 'none', '--out-dir', str(tmp_path / 'none')], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    single, = json.loads((tmp_path / 'none/benchmark_memory.json').read_text())['results']
    assert single['launcher'] == 'none' and single['ddp_buckets_gib'] == 0
    assert result['tensors_at_peak_gib'] - single['tensors_at_peak_gib'] == pytest.approx(result['ddp_buckets_gib'])

    # --against: a GPU run's JSON gives the configs and settings; each estimate stands beside its measurement
    measured = dict(tool='benchmark_memory', memory_metric='gpu_peak_allocated_reserved',
                    settings=dict(batch_size=2, launcher='none', shape=[128, 160], seed=0,
                                  cfg_options={'model.backbone.out_indices': [0, 1, 2, 3]}),
                    results=[dict(name='atto', config=config, status='ok', env=dict(device_name='H200'),
                                  train_peak_allocated_gib=single['estimated_peak_gib'] * 1.02)])
    (tmp_path / 'gpu.json').write_text(json.dumps(measured))
    proc = subprocess.run([sys.executable, TOOL, '--estimate', '--against', str(tmp_path / 'gpu.json'),
                           '--out-dir', str(tmp_path / 'against')], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    against = json.loads((tmp_path / 'against/benchmark_memory.json').read_text())
    (estimate, ), (row, ) = against['results'], against['against']
    assert (estimate['launcher'], estimate['image_shape']) == ('none', [128, 160]), "the measurement's settings"
    assert estimate['estimated_peak_gib'] == pytest.approx(single['estimated_peak_gib'], rel=1e-6)
    assert row['error'] == pytest.approx(1 / 1.02 - 1) and row['ok'] and row['device'] == 'H200'
    assert '| atto | H200 |' in proc.stdout and '-2.0% | yes |' in proc.stdout
    measured['results'][0]['train_peak_allocated_gib'] = single['estimated_peak_gib'] * 1.2
    (tmp_path / 'gpu.json').write_text(json.dumps(measured))
    proc = subprocess.run([sys.executable, TOOL, '--estimate', '--against', str(tmp_path / 'gpu.json'),
                           '--out-dir', str(tmp_path / 'against')], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1 and '-16.7% | NO |' in proc.stdout, proc.stdout + proc.stderr

    # what --validate has its workers run: the anchors' own loop, a single process (no --launcher: none)
    proc = subprocess.run([sys.executable, TOOL, '--estimate', config, '--shape', '128', '160', '--loop', 'anchor',
                           '--out-dir', str(tmp_path / 'anchor')], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the H100 anchors' own loop" in proc.stdout
    anchor, = json.loads((tmp_path / 'anchor/benchmark_memory.json').read_text())['results']
    assert (anchor['loop'], anchor['launcher'], anchor['ddp_buckets_gib']) == ('anchor', 'none', 0)
    assert anchor['previous_iteration_at_peak_gib'] >= anchor['grads_gib'] > 0


def test_against_takes_a_gpu_measurement_and_its_settings(tmp_path):
    cpu_run = dict(tool='benchmark_memory', memory_metric='cpu_peak_rss', settings={}, results=[])
    (tmp_path / 'cpu.json').write_text(json.dumps(cpu_run))
    for extra, message in ((['--against', str(tmp_path / 'cpu.json')], 'not a GPU measurement'),
                           (['--against', str(tmp_path / 'none.json')], 'no such file'),
                           (['--against', str(tmp_path / 'cpu.json'), '--launcher', 'none'], 'drop --launcher')):
        proc = subprocess.run([sys.executable, TOOL, '--estimate', *extra], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_validate_refuses_configs():
    proc = subprocess.run([sys.executable, TOOL, '--validate', 'configs/x.py'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and '--validate takes no CONFIG and needs --estimate' in proc.stderr
    for extra in (['--launcher', 'none'], ['--launcher', 'pytorch'], ['--shape', '800', '1333']):
        proc = subprocess.run([sys.executable, TOOL, '--estimate', '--validate', *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "--validate runs the anchors' own loop" in proc.stderr
    proc = subprocess.run([sys.executable, TOOL, '--estimate', '--loop-iterations', '2', 'tests/data/x.py'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and '--loop-iterations N (N >= 1) applies to --loop anchor' in proc.stderr
