"""The CUDA caching allocator model: block rounding, the two pools' segments, when a block is split, reuse of cached
blocks, merging on free, and the steady-state replay of a training step."""
from convnext_dense.analysis.cuda_allocator import CachingAllocatorModel, steady_state_peak

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
    peak, reserved = steady_state_peak(setup, step)
    # parameters 4 + state 16 (born in the first step, kept) + the activation 8, reusing the first step's block
    assert peak == 28 * MIB and reserved == 20 * MIB + 16 * MIB
