"""A device's caching allocator as torch's non-CUDA backends keep it (XPU, PrivateUse1 devices).

Block rounding, small and large pools with their segment sizes, segments kept until
`release_free_segments` (torch's ``empty_cache``), and the nine statistics of ``memory_stats``
for three pools, each with current, peak, allocated and freed, peaks kept until `reset_peaks`.
Sizes follow c10/xpu/XPUCachingAllocator.cpp, which the out-of-tree allocators mirror.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass

__all__ = [
    "GIB",
    "KIB",
    "MIB",
    "Block",
    "DeviceAllocator",
    "DevicePool",
    "check_device_index",
    "round_block",
]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Sizes from torch's XPU caching allocator.
_MIN_BLOCK = 512  # every block is a multiple of this
_SMALL_SIZE = 1 * MIB  # blocks up to this size live in the small pool
_SMALL_BUFFER = 2 * MIB  # small-pool segments
_LARGE_BUFFER = 20 * MIB  # segments for blocks between 1 and 10 MiB
_MIN_LARGE_ALLOC = 10 * MIB  # from here a block gets its own segment...
_ROUND_LARGE = 2 * MIB  # ...rounded up to this

# The nine statistics torch.xpu.memory_stats reports, each for three pools.
_STATS = (
    "allocation",
    "segment",
    "active",
    "inactive_split",
    "allocated_bytes",
    "reserved_bytes",
    "active_bytes",
    "inactive_split_bytes",
    "requested_bytes",
)
_POOLS = ("all", "small_pool", "large_pool")


@dataclass
class _Stat:
    current: int = 0
    peak: int = 0
    allocated: int = 0
    freed: int = 0

    def add(self, amount: int) -> None:
        self.current += amount
        self.allocated += amount
        self.peak = max(self.peak, self.current)

    def sub(self, amount: int) -> None:
        self.current -= amount
        self.freed += amount


@dataclass
class _Segment:
    size: int
    small: bool
    used: int = 0
    blocks: int = 0


@dataclass(frozen=True)
class Block:
    device: int
    segment: _Segment
    size: int
    requested: int


def round_block(nbytes: int) -> int:
    return max(_MIN_BLOCK, -(-nbytes // _MIN_BLOCK) * _MIN_BLOCK)


def _segment_size(block: int) -> int:
    if block <= _SMALL_SIZE:
        return _SMALL_BUFFER
    if block < _MIN_LARGE_ALLOC:
        return _LARGE_BUFFER
    return -(-block // _ROUND_LARGE) * _ROUND_LARGE


def _fmt(nbytes: int) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / MIB:.2f} MiB"


class DeviceAllocator:
    """One device's caching allocator: segments reserved from the device, blocks cut from them."""

    def __init__(self, runtime: str) -> None:
        #: How the runtime names itself in an out-of-memory message ("XPU").
        self.runtime = runtime
        self.segments: list[_Segment] = []
        self.stats = {name: {pool: _Stat() for pool in _POOLS} for name in _STATS}

    def _count(self, name: str, small: bool, amount: int) -> None:
        for pool in ("all", "small_pool" if small else "large_pool"):
            stat = self.stats[name][pool]
            if amount >= 0:
                stat.add(amount)
            else:
                stat.sub(-amount)

    @property
    def reserved(self) -> int:
        return self.stats["reserved_bytes"]["all"].current

    def malloc(self, device: int, nbytes: int, room: int) -> Block:
        """Place a block, reserving a new segment when no cached one has room (within `room`)."""
        size = round_block(nbytes)
        small = size <= _SMALL_SIZE
        segment = next(
            (s for s in self.segments if s.small == small and s.size - s.used >= size), None
        )
        if segment is None:
            new_size = _segment_size(size)
            if new_size > room:
                # Like torch: give cached segments back to the device and try once more.
                room += self.release_free_segments()
            if new_size > room:
                import torch

                raise torch.OutOfMemoryError(
                    f"{self.runtime} out of memory. Tried to allocate {_fmt(size)}. "
                    f"GPU {device} has {_fmt(max(room, 0))} free; "
                    f"{_fmt(self.reserved)} reserved in total by PyTorch."
                )
            segment = _Segment(size=new_size, small=small)
            self.segments.append(segment)
            self._count("segment", small, 1)
            self._count("reserved_bytes", small, new_size)
        segment.used += size
        segment.blocks += 1
        for name, amount in (
            ("allocation", 1),
            ("active", 1),
            ("allocated_bytes", size),
            ("active_bytes", size),
            ("requested_bytes", nbytes),
        ):
            self._count(name, small, amount)
        return Block(device=device, segment=segment, size=size, requested=nbytes)

    def free(self, block: Block) -> None:
        """Return a block to its segment; the segment stays reserved (cached)."""
        block.segment.used -= block.size
        block.segment.blocks -= 1
        small = block.segment.small
        for name, amount in (
            ("allocation", 1),
            ("active", 1),
            ("allocated_bytes", block.size),
            ("active_bytes", block.size),
            ("requested_bytes", block.requested),
        ):
            self._count(name, small, -amount)

    def release_free_segments(self) -> int:
        """Give every segment without live blocks back to the device; return the bytes freed."""
        released = 0
        for segment in [s for s in self.segments if s.blocks == 0]:
            self.segments.remove(segment)
            self._count("segment", segment.small, -1)
            self._count("reserved_bytes", segment.small, -segment.size)
            released += segment.size
        return released

    def reset_peaks(self) -> None:
        for pools in self.stats.values():
            for stat in pools.values():
                stat.peak = stat.current

    def reset_accumulated(self) -> None:
        for pools in self.stats.values():
            for stat in pools.values():
                stat.allocated = stat.freed = 0

    def flat_stats(self) -> collections.OrderedDict[str, int]:
        flat = [
            (f"{name}.{pool}.{metric}", getattr(stat, metric))
            for name, pools in self.stats.items()
            for pool, stat in pools.items()
            for metric in ("current", "peak", "allocated", "freed")
        ]
        return collections.OrderedDict(sorted(flat))


def check_device_index(index: int, count: int) -> None:
    """Raise as c10's device check does for an index outside ``0..count-1``."""
    if not 0 <= index < count:
        raise RuntimeError(
            f"device is out of range, device is {index}, total number of device is {count}."
        )


class DevicePool:
    """Each device's caching allocator, and the handles a fake hands out for its allocations."""

    def __init__(self, runtime: str, count: int) -> None:
        self.allocators = [DeviceAllocator(runtime) for _ in range(count)]
        self._blocks: dict[int, Block | None] = {}
        self._handles = itertools.count(1)

    def allocate(self, index: int, nbytes: int, usable_bytes: int) -> int:
        """Place `nbytes` on device `index` (of `usable_bytes` the device has for this process).

        Returns a handle for `free`. Zero bytes is a null pointer that counts nothing, as in torch.
        """
        handle = next(self._handles)
        if nbytes == 0:
            self._blocks[handle] = None
            return handle
        allocator = self.allocators[index]
        self._blocks[handle] = allocator.malloc(index, nbytes, usable_bytes - allocator.reserved)
        return handle

    def free(self, handle: int) -> None:
        """Drop the allocation `handle` (its memory stays reserved until released)."""
        try:
            block = self._blocks.pop(handle)
        except KeyError:
            raise ValueError(f"invalid allocation handle {handle} (already freed?)") from None
        if block is not None:
            self.allocators[block.device].free(block)
