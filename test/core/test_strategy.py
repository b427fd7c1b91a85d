"""The identifier's restart strategy (identify/strategy.py), one transition at a time."""

from diffmsm_ros.identify import strategy
from diffmsm_ros.identify.strategy import Restarts
from hypothesis import given, strategies as st
import numpy as np

NOISE = 1.0


def test_a_fresh_identifier_starts_robustly_and_more_data_bring_another_start():
    state = strategy.on_data(Restarts(), 1, memory=False)
    assert state.needs_global and state.chunks_seen == 1
    state = strategy.on_accept(state, stalled=False, fit_cost=5.0, noise_level=NOISE)
    assert not state.needs_global
    assert strategy.on_data(state, 1, memory=False) == state     # no new chunk: nothing
    grown = strategy.on_data(state, 2, memory=False)
    assert grown.needs_global and grown.chunks_seen == 2 and grown.retries == 0
    # with memory the data add up in the belief instead of a new robust start
    assert not strategy.on_data(state, 2, memory=True).needs_global


def test_a_stalled_fit_far_above_the_noise_is_retried_a_bounded_number_of_times():
    state = strategy.on_data(Restarts(), 3, memory=False)
    far = strategy.WRONG_BASIN * NOISE * 1.5
    tries = []
    for _ in range(strategy.RETRIES + 2):
        state = strategy.on_accept(state, stalled=True, fit_cost=far, noise_level=NOISE)
        tries.append(state.needs_global)
    assert tries == [True] * strategy.RETRIES + [False, False]
    assert state.retries == strategy.RETRIES
    # near the noise, or still descending: no retry
    near = strategy.on_accept(Restarts(), stalled=True, fit_cost=NOISE, noise_level=NOISE)
    descending = strategy.on_accept(Restarts(), stalled=False, fit_cost=far,
                                    noise_level=NOISE)
    assert not near.needs_global and not descending.needs_global
    # new data end the retries' count
    assert strategy.on_data(state, 4, memory=True).retries == 0


def test_a_lost_robust_start_waits_for_a_run_of_rejections():
    state = strategy.on_rejection(Restarts(), robust=True)
    assert not state.needs_global and state.rejections_in_row == 1
    for _ in range(strategy.GLOBAL_AFTER - 2):
        state = strategy.on_rejection(state, robust=False)
        assert not state.needs_global
    state = strategy.on_rejection(state, robust=False)
    assert state.needs_global and state.rejections_in_row == 0
    # an accepted update ends the run
    state = strategy.on_rejection(Restarts(needs_global=False), robust=False)
    assert strategy.on_accept(state, False, NOISE, NOISE).rejections_in_row == 0


@given(st.lists(st.tuples(st.sampled_from(['data', 'reject', 'accept']),
                          st.integers(0, 6), st.booleans(), st.floats(0.0, 10.0)),
                max_size=60))
def test_any_sequence_keeps_the_bookkeeping_within_its_limits(events):
    state = Restarts()
    for kind, chunks, flag, cost in events:
        if kind == 'data':
            before = state.chunks_seen
            state = strategy.on_data(state, chunks, memory=flag)
            assert state.chunks_seen == max(before, chunks)
        elif kind == 'reject':
            state = strategy.on_rejection(state, robust=flag)
        else:
            state = strategy.on_accept(state, flag, cost, NOISE)
            assert state.rejections_in_row == 0
        assert 0 <= state.rejections_in_row < strategy.GLOBAL_AFTER
        assert 0 <= state.retries <= strategy.RETRIES


def test_retries_start_from_jittered_muscles_drawn_by_the_retry_count():
    z = np.zeros(4)
    calls = []

    def jitter(z, rng):
        calls.append(rng.integers(1 << 30))
        return z + 1.0

    assert strategy.start_point(Restarts(), z, jitter) is z
    first = strategy.start_point(Restarts(retries=1), z, jitter)
    again = strategy.start_point(Restarts(retries=1), z, jitter)
    strategy.start_point(Restarts(retries=2), z, jitter)
    assert np.all(first == 1.0) and np.all(again == 1.0)
    assert calls[0] == calls[1] != calls[2]
