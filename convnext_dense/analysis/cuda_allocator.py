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
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

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


class Replay(NamedTuple):
    """What a replay reports, in bytes: the allocator's peak of allocated blocks (what
    ``torch.cuda.max_memory_allocated`` reports) and its segments, and the tensors' own peak (each request rounded
    to 512 bytes) over the same steps, with what was half precision at that peak, the phase that reached it and how
    much of it the previous iteration had left."""
    allocated_peak: int
    reserved: int
    tensors_peak: int
    half_at_peak: int
    phase_at_peak: Optional[str]
    previous_at_peak: int


class _Replayer:
    """The allocator model fed a trace, beside the count of the tensors' own bytes. Events: ``('alloc', key,
    nbytes[, half, phase])``, ``('free', key)`` and ``('drop_previous', keys)``, the place where a loop drops what
    its previous iteration left alive (tensors its variables still held, such as gradients kept until ``zero_grad``);
    ``keys`` are those tensors as this iteration makes them. Allocations are owned by (iteration, key), 0 the setup."""

    def __init__(self):
        self.allocator = CachingAllocatorModel()
        self.live: Dict[Tuple[int, int], Tuple[Block, int, bool]] = {}
        self.left: frozenset = frozenset()  # the owners the previous iteration left alive
        self.count = dict(tensors=0, half=0, previous=0)
        self.best = dict(tensors=0, half=0, previous=0, phase=None)

    def begin(self, left: Iterable[Tuple[int, int]]):
        """A new iteration, ``left`` what the previous one left alive for it."""
        self.left = frozenset(left)
        self.count['previous'] = sum(self.live[owner][1] for owner in self.left if owner in self.live)

    def reset_peak(self):
        self.allocator.reset_peak()
        self.best.update(self.count, phase=None)

    def replay(self, events: Iterable[tuple], iteration: int, skip=frozenset(), drop_previous: bool = False):
        """``events`` as iteration ``iteration``, without the allocations of ``skip``; with ``drop_previous`` the
        marks free what the previous iteration (``iteration - 1``) allocated under their keys."""
        for event in events:
            if event[0] == 'alloc':
                _, key, nbytes, *tag = event
                if key not in skip and nbytes > 0:  # an empty tensor gets no block
                    self._malloc((iteration, key), nbytes, bool(tag and tag[0]), tag[1] if len(tag) > 1 else None)
            elif event[0] == 'free':
                self._free((iteration, event[1]) if (iteration, event[1]) in self.live else (0, event[1]))
            elif event[0] == 'drop_previous' and drop_previous:
                for key in event[1]:
                    self._free((iteration - 1, key))

    def result(self) -> Replay:
        best = self.best
        return Replay(self.allocator.peak, self.allocator.reserved, best['tensors'], best['half'], best['phase'],
                      best['previous'])

    def _malloc(self, owner, nbytes: int, half: bool, phase: Optional[str]):
        size = rounded(nbytes)
        self.live[owner] = (self.allocator.malloc(nbytes), size, half)
        self.count['tensors'] += size
        self.count['half'] += size if half else 0
        if self.count['tensors'] > self.best['tensors']:
            self.best.update(self.count, phase=phase)

    def _free(self, owner):
        if owner not in self.live:
            return
        block, size, half = self.live.pop(owner)
        self.allocator.free(block)
        self.count['tensors'] -= size
        self.count['half'] -= size if half else 0
        self.count['previous'] -= size if owner in self.left else 0


def _left_keys(events: Iterable[tuple]) -> set:
    """The keys of what an iteration leaves to the next: those its drop marks name."""
    return {key for event in events if event[0] == 'drop_previous' for key in event[1]}


def steady_state_peak(setup: Iterable[tuple], step: List[tuple], count_first_step: bool = False) -> Replay:
    """Peak allocated bytes (and reserved bytes) of a training loop whose iterations all allocate and free as
    ``step`` does: replay ``setup`` (model, optimizer), ``step`` once, then ``step`` again on the warm cache, without
    the allocations of the first step that were never freed and that no later iteration drops (optimizer state, born
    in the first step), and with the first step's tensors that its drop marks name freed where the second drops them
    (in the first iteration there is nothing to drop). The peak is that of the second step, as a GPU benchmark
    measures after its warm-up, or with ``count_first_step`` that of both, as a loop measured from its first
    iteration."""
    replayer = _Replayer()
    replayer.replay(setup, 0)
    replayer.replay(step, 1)
    carried = _left_keys(step)
    persistent = {key for iteration, key in replayer.live if iteration == 1} - carried
    if not count_first_step:
        replayer.reset_peak()
    replayer.begin((1, key) for key in carried)
    replayer.replay(step, 2, skip=persistent, drop_previous=True)
    return replayer.result()


def replay_as_run(setup: Iterable[tuple], iterations: Sequence[List[tuple]]) -> Replay:
    """Peak allocated bytes (and reserved bytes) of a loop traced for several iterations as they ran, from the
    first: each iteration's own frees free what the previous one left (the drop marks only name it, for the count
    of what was left at the peak)."""
    replayer = _Replayer()
    replayer.replay(setup, 0)
    left: set = set()
    for events in iterations:
        replayer.begin((1, key) for key in left)
        replayer.replay(events, 1)
        left = _left_keys(events)
    return replayer.result()
