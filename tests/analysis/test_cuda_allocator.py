"""The CUDA caching allocator model: block rounding, the two pools' segments, when a block is split, reuse of cached
blocks, merging on free, and the steady-state replay of a training step, with what one iteration leaves to the next."""
from convnext_dense.analysis.cuda_allocator import CachingAllocatorModel, replay_as_run, steady_state_peak

MIB = 1 << 20


def test_requests_round_to_512_bytes_in_2_mib_or_20_mib_segments():
    allocator = CachingAllocatorModel()
    small = allocator.malloc(1)
    assert small.size == 512 and allocator.reserved == 2 * MIB, 'small pool: 2 MiB segments'
    large = allocator.malloc(3 * MIB + 1)
    assert large.size == 3 * MIB + 512, 'split off a 20 MiB segment: the rest (17 MiB) is worth keeping apart'
    assert allocator.reserved == 22 * MIB and allocator.allocated == 512 + 3 * MIB + 512
    allocator.malloc(2 * MIB)
    assert allocator.reserved == 22 * MIB, 'the rest of the 20 MiB segment serves the next large request'


def test_a_block_keeps_a_remainder_of_1_mib_or_less_and_counts_it():
    allocator = CachingAllocatorModel()
    block = allocator.malloc(19 * MIB + MIB // 2)  # own segment of 20 MiB; 0.5 MiB left: not split
    assert block.size == 20 * MIB and allocator.allocated == 20 * MIB
    allocator.free(block)
    reused = allocator.malloc(19 * MIB)  # the cached 20 MiB block, 1 MiB left: still not split (needs > 1 MiB)
    assert reused is block and allocator.allocated == 20 * MIB and allocator.reserved == 20 * MIB
    allocator.free(reused)
    smaller = allocator.malloc(12 * MIB)  # 8 MiB left: split, the request counts as itself
    assert smaller.size == 12 * MIB and allocator.allocated == 12 * MIB and allocator.peak == 20 * MIB


def test_freed_neighbours_merge_and_best_fit_picks_the_smallest_block_that_fits():
    allocator = CachingAllocatorModel()
    a, b = allocator.malloc(2 * MIB), allocator.malloc(3 * MIB)  # one 20 MiB segment: 2 + 3 + 15 free
    allocator.free(a)
    allocator.free(b)  # merges with a and with the free 15 MiB: one 20 MiB block again
    assert allocator.allocated == 0
    whole = allocator.malloc(19 * MIB)
    assert whole.size == 20 * MIB and allocator.reserved == 20 * MIB, 'no new segment: the merged block fits'
    allocator.free(whole)
    c = allocator.malloc(4 * MIB)
    big = allocator.malloc(30 * MIB)  # its own segment
    allocator.free(big)
    d = allocator.malloc(5 * MIB)
    assert d.address == c.address + c.size, 'best fit: the 16 MiB rest of the first segment, not the 30 MiB block'


def test_steady_state_is_the_second_step_on_a_warm_cache_with_the_optimizer_state():
    setup = [('alloc', 0, 4 * MIB)]  # parameters
    step = [('alloc', 1, 8 * MIB), ('alloc', 2, 16 * MIB), ('free', 1), ('alloc', 3, 0)]  # activation, state
    replay = steady_state_peak(setup, step)
    # parameters 4 + state 16 (born in the first step, kept) + the activation 8, reusing the first step's block
    assert replay.allocated_peak == 28 * MIB and replay.reserved == 20 * MIB + 16 * MIB
    assert replay.tensors_peak == 28 * MIB and replay.previous_at_peak == 0


def test_what_an_iteration_leaves_lives_into_the_next_until_it_drops_it():
    """A loop that zeroes its gradients between forward and backward (the memory anchors' loop): the previous
    step's gradients are alive through the forward of every iteration but the first."""
    setup = [('alloc', 0, 4 * MIB)]  # parameters
    step = [('alloc', 1, 8 * MIB, True, 'forward'),  # a half-precision activation
            ('drop_previous', [2]),  # zero_grad(set_to_none=True): the previous iteration's gradient goes
            ('free', 1),
            ('alloc', 2, 4 * MIB, False, 'backward')]  # the gradient, kept past the end of the iteration
    replay = steady_state_peak(setup, step)
    assert replay.tensors_peak == 16 * MIB, 'parameters, the previous gradient and the activation'
    assert replay.previous_at_peak == 4 * MIB and replay.half_at_peak == 8 * MIB
    assert replay.phase_at_peak == 'forward' and replay.allocated_peak == 16 * MIB
    first = steady_state_peak(setup, step, count_first_step=True)
    assert first.tensors_peak == 16 * MIB, 'the first iteration (12 MiB, no previous gradient) is below it'
    # Without the mark the gradient is never freed: it counts as state kept from the first step, not as born anew.
    kept = steady_state_peak(setup, [event for event in step if event[0] != 'drop_previous'])
    assert kept.tensors_peak == 16 * MIB and kept.previous_at_peak == 0

    # The same loop traced for two iterations as it ran: the second's own frees (its zero_grad) drop the first's
    # gradient, and its marks name what it leaves to a third.
    first = [('alloc', 1, 8 * MIB, True, 'forward'), ('drop_previous', [4]), ('free', 1),
             ('alloc', 4, 4 * MIB, False, 'backward')]
    second = [('alloc', 5, 8 * MIB, True, 'forward'), ('drop_previous', [8]), ('free', 4), ('free', 5),
              ('alloc', 8, 4 * MIB, False, 'backward')]
    assert replay_as_run(setup, [first, second]) == steady_state_peak(setup, step, count_first_step=True)
