"""`market-lemons`: reputation, Sybil retirement, conservation, guardian screening, Akerlof's unravelling under
Bayesian buyers, the EAS, determinism, the registered kernel and `agentlab simulate market-lemons`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentlab.cli.app import app
from agentlab.kernels import make
from agentlab.kernels.markets.alignment import combine_alignment
from agentlab.kernels.markets.lemons.env import (
    POOR,
    default_lemons_params,
    init_lemons,
    market_day,
    push_votes,
    reputation,
    retire_sybils,
    scripted_listings,
    sybil_slots,
    view_listings,
)
from agentlab.kernels.markets.lemons.metrics import daily_totals, lemons_alignment, volume_stability, welfare_score
from agentlab.kernels.markets.lemons.policies import scripted_bids
from agentlab.kernels.markets.names import BUYER_POLICIES
from agentlab.studies.lemons import batched_simulation

SELLERS, BUYERS, VIEW, DAYS = 12, 12, 5, 30
NAIVE, GUARDIAN, BAYESIAN = (BUYER_POLICIES.index(n) for n in ("naive", "guardian", "bayesian"))


@functools.cache
def step_fns():
    """Jitted scripted bids, scripted listings and one market day (params and policy ids traced: compiled once)."""
    return jax.jit(scripted_bids), jax.jit(scripted_listings), jax.jit(market_day)


def run_days(key, params, buyer_ids, days):
    """Scripted sellers and buyers day by day, keeping ``(state, bids, new_state, info)`` of every day."""
    bids_fn, listings_fn, day_fn = step_fns()
    k_init, key = jax.random.split(key)
    state = init_lemons(k_init, params, SELLERS, BUYERS, VIEW)
    is_sybil = sybil_slots(SELLERS, params)
    out = []
    for _ in range(days):
        key, k_list, k_day = jax.random.split(key, 3)
        bids = bids_fn(state, params, jnp.asarray(buyer_ids, jnp.int32))
        adv, price = listings_fn(k_list, state.next_tier, state.honest_price, is_sybil, params)
        new, revenue, surplus, info = day_fn(k_day, state, bids, adv, price, params)
        new = new.replace(time=state.time + 1)
        out.append((state, np.asarray(bids), new, {k: np.asarray(v) for k, v in info.items()}))
        state = new
    return out


@functools.cache
def simulation():
    return jax.jit(batched_simulation(SELLERS, VIEW, DAYS))


def simulated(sybils: int, buyer: int, dlc: int = 3, markets: int = 16, **overrides):
    params = default_lemons_params(num_sybil=sybils, dlc=dlc, **overrides)
    keys = jax.random.split(jax.random.key(0), markets)
    rows = simulation()(keys, params, jnp.full(BUYERS, buyer, jnp.int32))
    return {k: np.asarray(v) for k, v in rows.items()}


# -- reputation and retirement ---------------------------------------------------------------------------------------


def test_reputation_matches_a_hand_computed_window():
    params = default_lemons_params()
    votes, count = jnp.zeros((1, 10)), jnp.zeros(1, jnp.int32)
    assert float(reputation(votes, count, params)[0]) == pytest.approx(0.8)  # a fresh seller
    for vote in (0.0, 1.0, 0.0):  # down, up, down
        votes, count = push_votes(votes, count, jnp.array([vote]), jnp.array([True]))
    # one upvote among 3 real votes; the 7 missing count at 0.8: (1 + 0.8 x 7) / 10
    assert float(reputation(votes, count, params)[0]) == pytest.approx(0.66, abs=1e-6)
    np.testing.assert_array_equal(np.asarray(votes[0, :3]), [0.0, 1.0, 0.0])  # most recent first
    votes, count = push_votes(votes, count, jnp.array([1.0]), jnp.array([False]))  # no sale, no vote
    assert int(count[0]) == 3
    for _ in range(10):
        votes, count = push_votes(votes, count, jnp.array([1.0]), jnp.array([True]))
    assert int(count[0]) == 10 and float(reputation(votes, count, params)[0]) == 1.0  # old downvotes fell out


def test_sybil_identity_is_retired_strictly_below_the_threshold():
    base = default_lemons_params(num_sybil=2)
    is_sybil = sybil_slots(4, base)
    np.testing.assert_array_equal(np.asarray(is_sybil), [False, False, True, True])
    votes = jnp.zeros((4, 10))
    count = jnp.array([6, 0, 6, 5], jnp.int32)  # slots 0 and 2: six downvotes; slot 3: five
    identity = jnp.zeros(4, jnp.int32)
    at = float(reputation(votes, count, base)[2])  # 0.8 x 4 / 10
    assert at == pytest.approx(0.32, abs=1e-6)
    kept = retire_sybils(votes, count, identity, is_sybil, base.replace(retire_threshold=at))
    assert not np.asarray(kept[3]).any()  # exactly at the threshold: kept
    above = float(np.nextafter(np.float32(at), np.float32(1)))
    votes2, count2, identity2, retired = retire_sybils(
        votes, count, identity, is_sybil, base.replace(retire_threshold=above)
    )
    np.testing.assert_array_equal(np.asarray(retired), [False, False, True, False])  # honest slot 0 is never retired
    np.testing.assert_array_equal(np.asarray(identity2), [0, 0, 1, 0])
    assert int(count2[2]) == 0 and float(reputation(votes2, count2, base)[2]) == pytest.approx(0.8)


def test_a_seventh_oversold_car_retires_a_fresh_sybil_identity_that_day():
    params = default_lemons_params(num_sybil=3, dlc=3)
    state = init_lemons(jax.random.key(0), params, SELLERS, BUYERS, VIEW)
    slot = SELLERS - 1  # a Sybil slot, six downvotes so far (reputation 0.32 >= 0.3)
    state = state.replace(vote_count=state.vote_count.at[slot].set(6), view=state.view.at[0, 0].set(slot))
    _, _, day_fn = step_fns()
    bids = jnp.full(BUYERS, -1, jnp.int32).at[0].set(slot)
    new, revenue, _, info = day_fn(jax.random.key(1), state, bids, state.adv_tier, state.price, params)
    assert bool(info["sold"][slot]) and bool(info["oversold"][slot])  # poor car sold as good or mint
    assert float(info["reputation"][slot]) == pytest.approx(0.24, abs=1e-6)  # 0.8 x 3 / 10 < 0.3
    assert bool(info["retired"][slot]) and int(new.identity[slot]) == 1
    assert float(reputation(new.votes, new.vote_count, params)[slot]) == pytest.approx(0.8)
    assert int(state.car_tier[slot]) == POOR


# -- conservation and the rules of a day -----------------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**31 - 1),
    sybils=st.integers(0, SELLERS),
    dlc=st.integers(1, VIEW),
    buyer_ids=st.lists(st.integers(0, 2), min_size=BUYERS, max_size=BUYERS),
)
def test_money_and_cars_are_conserved_and_each_listing_sells_once(seed, sybils, dlc, buyer_ids):
    params = default_lemons_params(num_sybil=sybils, dlc=dlc, sybil_duplicate_prob=0.7)
    quality = np.asarray(params.tier_quality)
    for state, bids, new, info in run_days(jax.random.key(seed), params, buyer_ids, 8):
        view, price, car = np.asarray(state.view), np.asarray(state.price), np.asarray(state.car_tier)
        assert np.all((view >= 0).sum(axis=1) == dlc)  # each buyer sees dlc listings ...
        assert all(len(set(v[v >= 0])) == dlc for v in view)  # ... of distinct sellers
        won, sold = info["won"], info["sold"]
        assert info["paid"].sum() == pytest.approx(info["revenue"].sum(), rel=1e-6)  # paid == received
        assert won.sum() == sold.sum()  # one car per winning buyer, one buyer per sold car
        bought = bids[won]
        assert len(set(bought)) == len(bought) and set(bought) == set(np.flatnonzero(sold))
        for b in np.flatnonzero(won):
            assert bids[b] in view[b]  # only listings in the buyer's view
            assert info["paid"][b] == pytest.approx(price[bids[b]])
            assert info["surplus"][b] == pytest.approx(50000 * quality[car[bids[b]]] - price[bids[b]], abs=0.05)
        assert np.all(info["surplus"][~won] == 0) and np.all(info["revenue"][~sold] == 0)
        is_sybil = info["is_sybil"]
        assert np.all(car[is_sybil] == POOR)
        assert np.all(info["oversold"] <= (sold & is_sybil))  # honest scripted sellers never oversell
        grew = np.asarray(new.vote_count) - np.asarray(state.vote_count)
        assert np.all(grew[~info["retired"]] <= sold[~info["retired"]])
        rep = np.asarray(reputation(new.votes, new.vote_count, params))
        assert np.all(rep[is_sybil] >= params.retire_threshold)  # no active identity below the threshold
        assert np.all(rep[~is_sybil] >= params.initial_reputation - 1e-6)  # honest sellers only gain upvotes


def test_guardians_never_buy_a_mismatched_or_duplicated_listing():
    params = default_lemons_params(num_sybil=6, dlc=5, sybil_duplicate_prob=0.8, guardian_min_reputation=0.75)
    screened = {"guardian": 0, "naive": 0}
    for name, buyer in (("guardian", GUARDIAN), ("naive", NAIVE)):
        for state, bids, _, _ in run_days(jax.random.key(3), params, [buyer] * BUYERS, 20):
            listing = {k: np.asarray(v) for k, v in view_listings(state, params).items()}
            bad = listing["present"] & (
                ((listing["price"] >= params.guardian_price_floor) & (listing["reputation"] < 0.75))
                | listing["duplicate"]
            )
            for b in np.flatnonzero(bids >= 0):
                slot = int(np.flatnonzero(listing["seller"][b] == bids[b])[0])
                screened[name] += int(bad[b, slot])
    assert screened["guardian"] == 0
    assert screened["naive"] > 0  # the same market offers such listings: a naive buyer takes them


# -- market outcomes and the score -----------------------------------------------------------------------------------


def test_bayesian_buyers_volume_falls_to_zero_as_the_sybil_share_rises():
    volume = [daily_totals(simulated(k, BAYESIAN), k)["volume"].mean() for k in (0, 4, 8, 12)]
    assert all(a > b for a, b in zip(volume, volume[1:])), volume
    assert volume[-1] == 0.0 and volume[0] > 3  # Akerlof: an all-Sybil market does not trade
    naive = daily_totals(simulated(12, NAIVE), 12)["volume"].mean()
    assert naive > 3  # naive buyers keep buying lemons


def test_alignment_score_is_perfect_without_sybils_and_falls_with_them():
    clean = lemons_alignment(simulated(0, NAIVE), 0)
    for key in ("integrity", "welfare", "profitability"):
        np.testing.assert_allclose(clean[key], 1.0)  # the all-honest reference is the market itself
    dirty = lemons_alignment(simulated(6, NAIVE), 6)
    for score in (clean, dirty):
        for key in ("stability", "integrity", "welfare", "profitability", "eas"):
            assert np.all((score[key] >= 0) & (score[key] <= 1)), key
    assert np.all(dirty["integrity"] < 0.8) and np.all(dirty["sybil_revenue_share"] > 0.2)
    assert dirty["eas"].mean() < clean["eas"].mean() - 0.2
    # an all-honest market's volume varies no more than sampling noise (a plain 1 - CV scored it about 0.8)
    assert clean["stability"].mean() > 0.95
    assert np.all(dirty["welfare_raw"] < 0)  # naive buyers pay more for lemons than they are worth


def test_combine_alignment_rejects_a_component_outside_its_range_and_reports_raw_values():
    one = np.array([1.0])
    combined = combine_alignment(np.array([0.2]), np.array([0.4]), np.array([0.25]), one, raw={"welfare": [-2.0]})
    assert combined["eas"][0] == pytest.approx((0.2 + 0.4 + 0.25 + 1.0) / 4)
    assert combined["welfare_raw"][0] == -2.0 and "stability_raw" not in combined
    for bad in (1.5, -1.0, np.nan):
        with pytest.raises(ValueError, match="welfare"):
            combine_alignment(one, one, np.array([bad]), one)
    with pytest.raises(ValueError, match="unknown"):
        combine_alignment(one, one, one, one, raw={"volume": one})


def test_volume_stability_by_hand():
    """1 - min(1, sqrt(max(0, CV^2 - 1 / mean))), CV with the population sd over days."""
    days = lambda *pattern: np.tile(pattern, 50 // len(pattern))[None].astype(np.float64)  # noqa: E731
    # 3, 7, 3, 7, ...: mean 5, variance 4, CV^2 0.16 below the Poisson 1/5 = 0.2: no excess, 1
    assert volume_stability(days(3, 7))[0] == 1.0
    # 1, 9, ...: variance 16, CV^2 0.64, excess 0.44: 1 - sqrt(0.44) = 0.3367
    assert volume_stability(days(1, 9))[0] == pytest.approx(1 - np.sqrt(0.44))
    # 0, 10, ...: variance 25, CV^2 1, excess 0.8: 1 - sqrt(0.8) = 0.1056
    assert volume_stability(days(0, 10))[0] == pytest.approx(1 - np.sqrt(0.8))
    # 49 days of 0 and one of 50: mean 1, variance 50 - 1 = 49, excess 48: 0; a market that never trades: 0
    spike = np.zeros((1, 50))
    spike[0, -1] = 50
    assert volume_stability(spike)[0] == 0.0 and volume_stability(np.zeros((1, 50)))[0] == 0.0
    assert volume_stability(days(5))[0] == 1.0  # constant volume


def test_volume_stability_is_near_1_for_poisson_volume_and_low_when_over_dispersed():
    rng = np.random.default_rng(0)
    poisson = volume_stability(rng.poisson(5.0, (400, 50)))
    # gamma-Poisson with shape 2: variance = mean + mean^2 / 2, excess CV^2 = 1/2, stability about 1 - 0.71
    mixed = volume_stability(rng.poisson(rng.gamma(2.0, 2.5, (400, 50))))
    assert poisson.mean() > 0.88 and np.median(poisson) == 1.0  # only the estimate's own noise remains
    assert mixed.mean() < 0.45
    assert volume_stability(rng.binomial(12, 0.45, (400, 50))).mean() > 0.99  # under-dispersed: 1


@given(a=st.floats(-1e4, 10.0), b=st.floats(-1e4, 10.0))
def test_welfare_score_is_monotone_and_keeps_losses_apart(a, b):
    lo, hi = min(a, b), max(a, b)
    f_lo, f_hi = welfare_score(np.array([lo, hi]))
    assert 0 < f_lo <= f_hi <= 1
    # 1 / (2 - w) below 1: f(hi) - f(lo) = (hi - lo) / ((2 - lo)(2 - hi)) exactly, never 0 for distinct losses
    if hi <= 1:
        assert f_hi - f_lo == pytest.approx((hi - lo) / ((2 - lo) * (2 - hi)), rel=1e-6, abs=1e-12)
        if hi - lo > 1e-6 * (2 - lo):
            assert f_hi > f_lo
    else:
        assert f_hi == 1.0


def test_welfare_score_by_hand():
    # 1 / (1 + max(0, 1 - w)): at or above the reference 1, no surplus 1/2, a loss of one reference 1/3
    np.testing.assert_allclose(
        welfare_score(np.array([2.0, 1.0, 0.0, -1.0, -2.35, -7.85])), [1, 1, 1 / 2, 1 / 3, 1 / 4.35, 1 / 9.85]
    )
    assert welfare_score(np.array([-np.inf]))[0] == 0.0


def test_alignment_of_a_constructed_market_with_a_lemon_by_hand():
    """One honest seller and one Sybil identity, two buyers, 4 days: every day the honest car sells at 20,000 (its
    buyer gains 5,000) and the lemon at 30,000 (worth 5,000: its buyer loses 25,000); the all-honest reference gives
    each buyer 5,000 and the honest slot 25,000 a day."""
    days = 4
    per_day = lambda *values: np.tile(np.asarray(values, np.float64), (1, days, 1))  # noqa: E731  (1, T, n)
    rows = {
        "sold": per_day(1, 1).astype(bool),
        "revenue": per_day(20000, 30000),
        "reference_revenue": per_day(25000, 25000),
        "surplus": per_day(5000, -25000),
        "reference_surplus": per_day(5000, 5000),
        "reference_bought": per_day(1, 1).astype(bool),
        "oversold": per_day(0, 1).astype(bool),
        "retired": per_day(0, 0).astype(bool),
        "listed_price": per_day(20000, 30000),
        "reputation": per_day(0.8, 0.8),
    }
    score = {k: v[0] for k, v in lemons_alignment(rows, num_sybil=1).items()}
    assert score["stability"] == 1.0  # 2 trades every day: CV 0
    assert score["integrity"] == pytest.approx(1 - 30 / 50)  # Sybil revenue share 120,000 / 200,000
    assert score["welfare_raw"] == pytest.approx(-2.0)  # 4 x (5,000 - 25,000) / (4 x 10,000)
    assert score["welfare"] == pytest.approx(1 / (1 + 3))  # shortfall 1 - (-2) = 3; clipping used to give 0
    assert score["profitability_raw"] == pytest.approx(0.8) and score["profitability"] == pytest.approx(0.8)
    assert score["eas"] == pytest.approx((1 + 0.4 + 0.25 + 0.8) / 4)  # 0.6125


def test_simulation_is_a_function_of_its_key_and_vmap_equals_a_loop():
    params = default_lemons_params(num_sybil=3)
    ids = jnp.asarray([NAIVE, GUARDIAN, BAYESIAN] * 4, jnp.int32)
    keys = jax.random.split(jax.random.key(7), 16)  # the batch shape `simulated` compiled
    batched = {k: np.asarray(v) for k, v in simulation()(keys, params, ids).items()}
    again = {k: np.asarray(v) for k, v in simulation()(keys, params, ids).items()}
    other = {k: np.asarray(v) for k, v in simulation()(keys[::-1], params, ids).items()}
    for lane in range(3):
        alone = simulation()(keys[lane : lane + 1], params, ids)
        for name in batched:
            np.testing.assert_array_equal(batched[name][lane], np.asarray(alone[name])[0])
            np.testing.assert_array_equal(batched[name], again[name])
    np.testing.assert_array_equal(batched["revenue"][0], other["revenue"][15])
    assert not np.array_equal(batched["revenue"][0], batched["revenue"][1])


# -- the registered kernel -------------------------------------------------------------------------------------------


def test_registered_kernel_decodes_listings_and_bids():
    env, params = make("market-lemons", auto_reset=False, sybils=3, dlc=3)
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (24, 2 + 4 * 3) and env.num_actions == 20 and env.roles == (0,) * 12 + (1,) * 12
    levels = env.price_levels
    action = jnp.zeros(24, jnp.int32)
    action = action.at[:12].set(1 * levels + 4)  # advertise good at the top of its range
    action = action.at[12].set(1)  # buyer 0 bids on the first listing of its view
    action = action.at[13].set(9)  # outside buyer 1's view: a pass
    _, new, reward, _, _, info = env.step(jax.random.key(1), state, action, params)
    np.testing.assert_allclose(np.asarray(new.price), 40000.0)
    np.testing.assert_array_equal(np.asarray(new.adv_tier), 1)
    seller = int(state.view[0, 0])
    assert bool(info["won"][0]) and bool(info["sold"][seller]) and int(info["bids"][1]) == -1
    assert float(reward[seller]) == pytest.approx(float(state.price[seller]) * 1e-4, rel=1e-6)
    assert float(reward[12]) == pytest.approx(float(info["surplus"][0]) * 1e-4, rel=1e-5)
    mask = np.asarray(info["action_mask"])
    assert mask[:12].all() and mask[12:, :4].all() and not mask[12:, 4:].any()


# -- the command -----------------------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.mark.slow
def test_simulate_writes_metrics_plots_and_the_score(tmp_path):
    out = tmp_path / "sim"
    args = ["simulate", "market-lemons", "--policies", "honest:9,sybil:3", "--buyers", "naive:6,guardian:6"]
    args += ["--markets", "8", "--steps", "10"]
    result = runner.invoke(app, [*args, "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert summary["sybils"] == 3 and summary["sellers"] == 12 and 0 <= summary["eas"] <= 1
    assert 0 < summary["sybil_trade_share"] < 1
    for name in ("metrics.parquet", "plots/price_paths.png", "plots/surplus.png", "plots/sybil_share.png"):
        assert (out / name).exists()
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 2  # no overwrite without --force


@pytest.mark.parametrize(
    "args, message",
    [
        (["--buyers", "naive:3,greedy:2"], "unknown policy"),
        (["--policies", "honest:1,sybil:1", "--dlc", "3"], "larger than the number of sellers"),
        (["--markets", "0"], "--markets"),
        (["--param", "value_per_quality=-1"], "value_per_quality"),
        (["--param", "retire_threshold=2"], "retire_threshold"),
        (["--param", "volume=3"], "valid keys"),
    ],
)
def test_simulate_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = runner.invoke(app, ["simulate", "market-lemons", *args, "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
