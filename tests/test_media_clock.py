"""The media clock: frames placed by when they were shot, across bursts, loops and outages."""

from __future__ import annotations

import itertools

import pytest

from vlm_monitor.media_clock import MediaClock

T0 = 1_700_000_000.0


def test_bursty_arrivals_keep_the_presentation_spacing() -> None:
    clock = MediaClock()
    # 15 fps shot, delivered in bursts of five frames every third of a second.
    times = [clock.unix(T0 + (i // 5) * 5 / 15 + 0.001 * (i % 5), i / 15) for i in range(30)]
    assert times == pytest.approx([T0 + i / 15 for i in range(30)], abs=1e-5)


def test_a_loop_restarting_presentation_times_continues_one_frame_on() -> None:
    clock = MediaClock()
    times = [clock.unix(T0 + i / 15 + 0.2 * (i > 100), (i % 150) / 15) for i in range(300)]
    steps = [b - a for a, b in itertools.pairwise(times)]
    # The loop at frame 150 arrives 0.2 s late (the machine was busy): no gap in the time line.
    assert steps == pytest.approx([1 / 15] * 299, abs=1e-5)


def test_an_outage_reanchors_at_the_arrival() -> None:
    clock = MediaClock()
    before = [clock.unix(T0 + i / 15, 100 + i / 15) for i in range(15)]
    after = clock.unix(T0 + 6.0, 0.0)  # reconnected 5 s later, the camera's clock restarted
    assert after == pytest.approx(T0 + 6.0)
    assert clock.unix(T0 + 6.1, 0.5) == pytest.approx(T0 + 6.5)  # then by pts again
    assert before[-1] < after


def test_without_presentation_times_arrival_is_used_and_never_goes_back() -> None:
    clock = MediaClock()
    assert clock.unix(T0, None) == T0
    assert clock.unix(T0 + 1.0, None) == T0 + 1.0
    assert clock.unix(T0 + 0.5, None) == T0 + 1.0  # an arrival stamp out of order


@pytest.mark.parametrize("rate", [0.8, 1.2])
def test_timestamps_that_do_not_run_in_real_time_give_way_to_arrival(rate: float) -> None:
    """An encoder that stamps 15 fps as 12 or 18: after two 20 s windows its clock is not
    used; the time line goes on by arrival, without a jump or a stall."""
    clock = MediaClock()
    times = [clock.unix(T0 + i / 15, rate * i / 15) for i in range(15 * 50)]
    assert not clock.trusted
    late = [b - a for a, b in itertools.pairwise(times[-15 * 5 :])]
    assert late == pytest.approx([1 / 15] * len(late), abs=1e-5)


def test_one_stall_or_connect_burst_keeps_the_cameras_clock() -> None:
    """A frame that arrives 1.5 s late at the end of a window (a stall, a busy decoder), or a
    connect burst, is one bad window: not enough to stop trusting the camera."""
    clock = MediaClock()
    for i in range(15 * 60):
        stall = 1.5 if i == 15 * 20 else 0.0
        burst = -1.4 if i < 20 else 0.0  # the first 20 frames came at once
        clock.unix(T0 + i / 15 + stall + burst * (1 - i / 20), i / 15)
        assert clock.trusted, i


def test_trust_comes_back_once_the_timestamps_run_true() -> None:
    clock = MediaClock()
    i = 0
    while clock.trusted:  # a wrong rate first
        clock.unix(T0 + i / 15, 1.2 * i / 15)
        i += 1
    base = 1.2 * i / 15 - i / 15
    for j in range(i, i + 15 * 25):  # then true
        clock.unix(T0 + j / 15, base + j / 15)
    assert clock.trusted


def test_a_timestamp_a_little_out_of_order_does_not_move_the_time_line() -> None:
    clock = MediaClock()
    pts = [i / 15 for i in range(30)]
    pts[10] -= 0.09  # before the frame ahead of it
    times = [clock.unix(T0 + i / 15, p) for i, p in enumerate(pts)]
    assert times[10] == times[9]
    assert times[11:] == pytest.approx([T0 + i / 15 for i in range(11, 30)], abs=1e-5)
    assert clock.trusted
