import asyncio
import itertools
import threading
import time

import numpy as np
import pytest

from vlm_monitor.hub import StreamHub
from vlm_monitor.types import Frame

PIXELS = np.zeros((36, 64, 3), np.uint8)


def frame(seq: int, ts: float | None = None, stream: str = "s") -> Frame:
    return Frame(stream, seq, time.time() if ts is None else ts, PIXELS)


def test_latest_keeps_only_newest_and_counts_drops() -> None:
    hub = StreamHub()
    sub = hub.subscribe("s", "t", "latest")
    for i in range(1, 6):
        hub.publish(frame(i))
    got = sub.get(timeout=0)
    assert got is not None and got.seq == 5
    assert sub.get(timeout=0) is None
    assert sub.stats.dropped == 4 and sub.stats.delivered == 1


def test_ring_drops_oldest() -> None:
    hub = StreamHub()
    sub = hub.subscribe("s", "t", "ring", capacity=3)
    for i in range(1, 8):
        hub.publish(frame(i))
    assert [sub.get(0).seq for _ in range(3)] == [5, 6, 7]
    assert sub.stats.dropped == 4


def test_ring_is_race_free_under_concurrent_producer_and_consumers() -> None:
    hub = StreamHub()
    sub = hub.subscribe("s", "t", "ring", capacity=4)
    total = 20000
    got: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def consume() -> None:
        while True:
            f = sub.get(timeout=0.01)
            if f is not None:
                with lock:
                    got.append(f.seq)
            elif done.is_set():
                return

    consumers = [threading.Thread(target=consume) for _ in range(3)]
    for t in consumers:
        t.start()
    for i in range(1, total + 1):
        hub.publish(frame(i, ts=float(i)))
    done.set()
    for t in consumers:
        t.join(10)
    # every frame is either delivered exactly once or counted as dropped, never both or lost
    assert len(got) == len(set(got))
    assert len(got) + sub.stats.dropped == total
    assert sub.stats.delivered == len(got)


def test_frame_rate_decimates_by_timestamp() -> None:
    hub = StreamHub()
    sub = hub.subscribe("s", "t", "ring", capacity=1000, frame_rate=10)
    rng = np.random.default_rng(3)
    # 30 fps for 10 s with +/- 3 ms jitter and a 2 s gap (reconnect) in the middle
    times = [i / 30 + rng.uniform(-0.003, 0.003) for i in range(300)]
    times += [12 + i / 30 for i in range(300)]
    for i, ts in enumerate(times, 1):
        hub.publish(frame(i, ts=ts))
    delivered = sub.stats.delivered + len(sub._buf)
    assert 195 <= delivered <= 205  # 10 fps over 20 s of video
    assert sub.stats.skipped == len(times) - delivered


def test_asking_the_source_rate_gives_every_frame_despite_jitter() -> None:
    """A 15 fps camera decoded with +/- 10 ms of jitter and, now and then, two frames
    released together after a gap (B-frames), asked at 15 fps (heart rate): every frame is
    due, none skipped; asked at 7.5 fps, every other one, evenly."""
    hub = StreamHub()
    full = hub.subscribe("s", "full", "ring", capacity=1000, frame_rate=15)
    half = hub.subscribe("s", "half", "ring", capacity=1000, frame_rate=7.5)
    rng = np.random.default_rng(5)
    times = [i / 15 + rng.uniform(-0.01, 0.01) for i in range(300)]
    for i in range(10, 300, 25):  # frame i held back until frame i + 1 is decoded
        times[i] = times[i + 1] - 0.002
    for i, ts in enumerate(times, 1):
        hub.publish(frame(i, ts=ts))
    assert full.stats.skipped == 0 and len(full._buf) == 300
    kept = [f.seq for f in half._buf]
    assert 148 <= len(kept) <= 152
    gaps = {b - a for a, b in itertools.pairwise(kept)}
    assert gaps <= {1, 2, 3}, gaps


def test_frames_are_shared_not_copied() -> None:
    hub = StreamHub()
    a, b = hub.subscribe("s", "a"), hub.subscribe("s", "b")
    f = frame(1)
    hub.publish(f)
    assert a.get(0) is f and b.get(0) is f
    assert f.bgr() is f.bgr()
    assert not f.bgr().flags.writeable


def test_conversions_are_cached_once_per_size() -> None:
    f = Frame("s", 1, 0.0, np.zeros((360, 640, 3), np.uint8))
    small = f.bgr((320, 180))
    assert small.shape == (180, 320, 3)
    assert f.bgr((320, 180)) is small
    assert f.jpeg() is f.jpeg()


def test_streams_are_isolated_and_close_ends_consumers() -> None:
    hub = StreamHub()
    sub = hub.subscribe("a", "t")
    hub.publish(frame(1, stream="b"))
    assert sub.get(timeout=0) is None
    hub.close_stream("a")
    assert sub.closed and sub.get(timeout=1) is None
    assert hub.subscriptions("a") == ()


async def test_slow_subscriber_does_not_slow_others() -> None:
    hub = StreamHub()
    fast = hub.subscribe("s", "fast", "latest")
    slow = hub.subscribe("s", "slow", "ring", capacity=2)
    fast_got: list[int] = []

    async def fast_consumer() -> None:
        while (f := await fast.next(timeout=1)) is not None:
            fast_got.append(f.seq)

    def slow_consumer() -> None:
        while slow.get(timeout=1) is not None:
            time.sleep(0.2)

    slow_thread = threading.Thread(target=slow_consumer)
    slow_thread.start()
    task = asyncio.create_task(fast_consumer())
    producer_started = time.perf_counter()
    for i in range(1, 61):  # 60 frames at 100 fps
        hub.publish(frame(i))
        await asyncio.sleep(0.01)
    produce_s = time.perf_counter() - producer_started
    hub.close_stream("s")
    await task
    slow_thread.join(5)
    assert produce_s < 1.5  # the producer never waited for the slow consumer
    assert len(fast_got) >= 55  # the fast one saw (almost) every frame
    assert slow.stats.delivered < 15 and slow.stats.dropped > 40


async def test_async_next_times_out_and_iterates() -> None:
    hub = StreamHub()
    sub = hub.subscribe("s", "t", "ring", capacity=10)
    assert await sub.next(timeout=0.05) is None

    def produce() -> None:
        for i in range(1, 4):
            time.sleep(0.02)
            hub.publish(frame(i))
        hub.close_stream("s")

    threading.Thread(target=produce).start()
    seqs = [f.seq async for f in sub]
    assert seqs == [1, 2, 3]


def test_bad_policy_is_rejected() -> None:
    hub = StreamHub()
    with pytest.raises(ValueError):
        hub.subscribe("s", "t", "fifo")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        hub.subscribe("s", "t", frame_rate=0)
