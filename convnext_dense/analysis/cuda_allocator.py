"""PyTorch's CUDA caching allocator, replayed on a trace of allocations and frees, for the memory estimate.

Why: ``torch.cuda.max_memory_allocated`` counts the allocator's blocks, not the tensors' bytes. A request is rounded up
to 512 bytes; a cached free block that fits is reused whole unless what would remain is worth splitting off (at least
512 bytes in the small pool, more than 1 MiB in the large pool), so a tensor can hold up to 1 MiB more than it asked
for, and which block it gets depends on everything freed before it. The rules are those of
``c10/cuda/CUDACachingAllocator.cpp`` at its defaults (no ``PYTORCH_CUDA_ALLOC_CONF``): two pools split at 1 MiB,
best fit by (size, address), new segments of 2 MiB (small requests), 20 MiB (requests under 10 MiB) or the request
rounded to 2 MiB, and freed blocks merged with free neighbours of the same segment. One stream; nothing is released
to the driver (an 80 GB card runs these steps without the allocator freeing its cache).
"""
import bisect
from typing import Dict, Iterable, List, Optional, Tuple

MIB = 1 << 20
MIN_BLOCK = 512            # every request is rounded up to a multiple of this
SMALL_REQUEST = 1 * MIB    # requests up to this come from the small pool
SMALL_SEGMENT = 2 * MIB    # what the small pool asks cudaMalloc for
LARGE_SEGMENT = 20 * MIB   # what a large request under MIN_LARGE_ALLOC gets a segment of
MIN_LARGE_ALLOC = 10 * MIB
ROUND_LARGE = 2 * MIB      # larger requests get a segment of their size rounded to this


def rounded(nbytes: int) -> int:
    return max(MIN_BLOCK, -(-nbytes // MIN_BLOCK) * MIN_BLOCK)


def segment_bytes(size: int) -> int:
    if size <= SMALL_REQUEST:
        return SMALL_SEGMENT
    if size < MIN_LARGE_ALLOC:
        return LARGE_SEGMENT
    return -(-size // ROUND_LARGE) * ROUND_LARGE


class Block:
    __slots__ = ('size', 'address', 'small', 'prev', 'next', 'free')

    def __init__(self, size: int, address: int, small: bool):
        self.size, self.address, self.small = size, address, small
        self.prev: Optional[Block] = None
        self.next: Optional[Block] = None
        self.free = True


class CachingAllocatorModel:
    """``malloc(nbytes) -> Block`` and ``free(block)``; ``allocated`` and ``peak`` as the CUDA allocator's stats count
    them (block sizes), ``reserved`` the segments' total."""

    def __init__(self):
        self._pools: Dict[bool, List[Tuple[int, int, Block]]] = {True: [], False: []}  # small? -> (size, address)
        self._next_address = 0
        self.allocated = self.peak = self.reserved = 0

    def malloc(self, nbytes: int) -> Block:
        size = rounded(nbytes)
        small = size <= SMALL_REQUEST
        pool = self._pools[small]
        index = bisect.bisect_left(pool, (size, -1))
        if index < len(pool):
            block = pool.pop(index)[2]
        else:
            block = Block(segment_bytes(size), self._next_address, small)
            self._next_address += block.size
            self.reserved += block.size
        remaining = block.size - size
        if remaining >= MIN_BLOCK if small else remaining > SMALL_REQUEST:
            rest = Block(remaining, block.address + size, small)
            rest.prev, rest.next = block, block.next
            if block.next is not None:
                block.next.prev = rest
            block.next, block.size = rest, size
            self._insert(rest)
        block.free = False
        self.allocated += block.size
        self.peak = max(self.peak, self.allocated)
        return block

    def free(self, block: Block):
        self.allocated -= block.size
        block.free = True
        previous, following = block.prev, block.next
        if previous is not None and previous.free:
            self._remove(previous)
            block.address, block.size, block.prev = previous.address, previous.size + block.size, previous.prev
            if previous.prev is not None:
                previous.prev.next = block
        if following is not None and following.free:
            self._remove(following)
            block.size, block.next = block.size + following.size, following.next
            if following.next is not None:
                following.next.prev = block
        self._insert(block)

    def reset_peak(self):
        self.peak = self.allocated

    def _insert(self, block: Block):
        bisect.insort(self._pools[block.small], (block.size, block.address, block))

    def _remove(self, block: Block):
        pool = self._pools[block.small]
        index = bisect.bisect_left(pool, (block.size, block.address))
        assert pool[index][2] is block
        del pool[index]


def steady_state_peak(setup: Iterable[tuple], step: List[tuple]) -> Tuple[int, int]:
    """Peak allocated bytes (and reserved bytes) of the second of two identical training steps, as the GPU benchmark
    measures after its warm-up: replay ``setup`` (model, optimizer), ``step`` once, then ``step`` again on the warm
    cache, without the allocations of the first step that were never freed (optimizer state, born in the first
    step). Events: ``('alloc', key, nbytes)`` and ``('free', key)``."""
    allocator = CachingAllocatorModel()
    blocks: Dict[int, Block] = {}

    def replay(events, skip=frozenset()):
        for event in events:
            if event[0] == 'alloc':
                if event[1] not in skip and event[2] > 0:  # an empty tensor gets no block
                    blocks[event[1]] = allocator.malloc(event[2])
            elif event[1] in blocks:
                allocator.free(blocks.pop(event[1]))

    replay(setup)
    first = set(blocks)
    replay(step)
    persistent = set(blocks) - first
    allocator.reset_peak()
    replay(step, skip=persistent)
    return allocator.peak, allocator.reserved
