"""`market-crash`: money and goods conservation, bankruptcy, scripted policies, the EAS, and `agentlab simulate`."""

from __future__ import annotations

import functools
import math

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
from agentlab.kernels.markets.crash import (
    FIRM_POLICIES,
    clipped_poisson,
    consumer_round,
    crash_alignment,
    default_crash_params,
    init_crash,
    market_day,
    recovery_days,
    scripted_actions,
    simulate_crash,
)

FIRMS, CONSUMERS = 5, 50


@functools.cache
def day_fn():
    return jax.jit(market_day)


def run_days(key, params, policy_ids, days):
    """Scripted firms, day by day, keeping every state and info (for the conservation checks)."""
    state = init_crash(key, params, FIRMS, CONSUMERS)
    policy = jax.jit(scripted_actions)
    out = []
    for _ in range(days):
        key, k_pol, k_day = jax.random.split(key, 3)
        price, units = policy(k_pol, state, params, jnp.asarray(policy_ids))
        new, reward, terminated, info = day_fn()(k_day, state, price, units, params)
        new = new.replace(time=state.time + 1)
        out.append((state, new, reward, terminated, info))
        state = new
    return out


@given(
    seed=st.integers(0, 2**31 - 1),
    ids=st.lists(st.integers(0, len(FIRM_POLICIES) - 1), min_size=FIRMS, max_size=FIRMS),
    dlc=st.integers(1, FIRMS),
    overhead=st.floats(0.0, 20.0),
    tax=st.floats(0.0, 0.2),
)
def test_money_and_goods_are_conserved_and_bankrupt_firms_never_trade(seed, ids, dlc, overhead, tax):
    params = default_crash_params(dlc=dlc, overhead=overhead, tax_rate=tax, initial_cash=60.0)
    seen_dead = np.zeros(FIRMS, bool)
    for state, new, reward, terminated, info in run_days(jax.random.key(seed), params, ids, 25):
        spend = float(jnp.sum(info["consumer_spend"]))
        assert spend == pytest.approx(float(jnp.sum(info["revenue"])), rel=1e-4, abs=1e-4)  # paid == received
        sold = np.asarray(info["units_sold"])
        stock = np.asarray(state.inventory + info["units_bought"])
        assert np.all(sold <= stock * (1 + 1e-5) + 1e-5)  # never more than the inventory
        np.testing.assert_allclose(np.asarray(new.inventory), stock - sold, rtol=1e-5, atol=1e-4)
        flows = info["revenue"] - info["purchase_cost"] - info["tax"] - info["fee"] - info["overhead"]
        np.testing.assert_allclose(np.asarray(new.cash - state.cash), np.asarray(flows), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(np.asarray(reward), np.asarray(flows), rtol=1e-4, atol=1e-3)
        assert np.all(np.asarray(info["purchase_cost"]) <= np.asarray(state.cash) * (1 + 1e-6) + 1e-6)
        dead = seen_dead.copy()
        assert np.all(sold[dead] == 0) and np.all(np.asarray(info["units_bought"])[dead] == 0)
        seen_dead |= ~np.asarray(new.alive)
        assert bool(terminated) == (not np.asarray(new.alive).any())


def test_a_firm_without_revenue_dies_in_about_32_days():
    params = default_crash_params(participation=0.0)
    state = init_crash(jax.random.key(0), params, FIRMS, CONSUMERS)
    for day in range(40):
        state, _, _, info = day_fn()(jax.random.key(day), state, jnp.full(FIRMS, 1.5), jnp.zeros(FIRMS), params)
        if not bool(state.alive[0]):
            break
    # Cash follows c -> 0.9 c - 2 from 500: below 2 / 0.9 after 31 days (Agent Bazaar: ~32).
    assert day + 1 == 31


def test_consumers_buy_from_the_cheapest_sampled_firm_with_dlc_all():
    params = default_crash_params(dlc=FIRMS)
    state = init_crash(jax.random.key(1), params, FIRMS, CONSUMERS)
    state = state.replace(inventory=jnp.full(FIRMS, 1e4))
    price = jnp.array([2.0, 1.1, 3.0, 1.5, 2.5])
    _, _, _, info = day_fn()(jax.random.key(2), state, price, jnp.zeros(FIRMS), params)
    sold = np.asarray(info["units_sold"])
    assert sold[1] > 0 and np.all(np.delete(sold, 1) == 0)
    expected = float(jnp.sum(jnp.where(info["shopped"], state.income, 0.0))) / 1.1
    assert sold[1] == pytest.approx(expected, rel=1e-5)


def test_supply_shock_raises_unit_cost_from_its_day():
    params = default_crash_params(shock_day=3, shock_cost=10.0)
    rows = jax.jit(lambda k: simulate_crash(k, params, jnp.array([1, 1, 1, 1, 1]), CONSUMERS, 6))(jax.random.key(0))
    np.testing.assert_allclose(np.asarray(rows["unit_cost"]), [1, 1, 1, 10, 10, 10])
    np.testing.assert_allclose(np.asarray(rows["price"])[4], 15.0)  # stabilise: 50% over the new cost


@functools.cache
def batched_simulation(days: int):
    """One compiled batch simulation; policy ids and params are traced arguments."""
    return jax.jit(jax.vmap(lambda k, p, ids: simulate_crash(k, p, ids, CONSUMERS, days), in_axes=(0, None, None)))


def simulated(ids: tuple[int, ...], dlc: int, markets: int = 16, days: int = 120):
    params = default_crash_params(dlc=dlc)
    rows = batched_simulation(days)(jax.random.split(jax.random.key(0), markets), params, jnp.asarray(ids))
    return {k: np.asarray(v) for k, v in rows.items()}, params


def test_alignment_score_orders_a_price_war_below_stabilising_firms():
    war, params = simulated((0, 0, 0, 0, 0), 3)
    calm, _ = simulated((1, 1, 1, 1, 1), 3)
    war_score, calm_score = crash_alignment(war, params), crash_alignment(calm, params)
    for score in (war_score, calm_score):
        for key in ("stability", "integrity", "welfare", "profitability", "eas"):
            assert np.all((score[key] >= 0) & (score[key] <= 1)), key
    np.testing.assert_allclose(calm_score["integrity"], 1.0, atol=1e-6)
    assert np.all(calm_score["bankruptcy_rate"] == 0)
    assert war_score["integrity"].mean() < 0.9  # the undercutters sell below cost
    assert war_score["eas"].mean() < calm_score["eas"].mean()
    # a fixed 50% markup serves at most 1 / 1.5 of the demand at cost; the price war collapses within the
    # 120 days (every firm gone), after which its participants count with nothing bought
    assert np.all(war_score["collapsed"])
    assert np.all(calm_score["welfare"] <= 1 / 1.5 + 1e-6) and calm_score["welfare"].mean() > 0.55
    assert np.all(war_score["welfare"] < calm_score["welfare"])


def test_participants_who_find_no_stock_are_still_demand():
    """With no stock anywhere nobody buys, but the day's participants and their income at unit cost are recorded:
    ``demand_units`` = their income / unit cost (unit cost 2 here)."""
    params = default_crash_params(unit_cost=2.0)
    state = init_crash(jax.random.key(3), params, FIRMS, CONSUMERS)
    _, _, _, info = day_fn()(jax.random.key(4), state, jnp.full(FIRMS, 3.0), jnp.zeros(FIRMS), params)
    assert float(jnp.sum(info["units_sold"])) == 0 and not bool(jnp.any(info["shopped"]))
    assert float(info["affordable_units"]) == 0  # the old denominator saw no demand at all
    participants = int(info["participants"])
    assert 15 <= participants <= 45  # Poisson(0.6 x 50 = 30)
    # the same key with stock everywhere: the same participants, now all buying
    stocked = state.replace(inventory=jnp.full(FIRMS, 1e5))
    _, _, _, full = day_fn()(jax.random.key(4), stocked, jnp.full(FIRMS, 3.0), jnp.zeros(FIRMS), params)
    assert int(jnp.sum(full["shopped"])) == participants == int(full["participants"])
    income = float(jnp.sum(jnp.where(full["shopped"], state.income, 0.0)))
    assert float(info["demand_units"]) == pytest.approx(income / 2.0, rel=1e-5)


def constructed_rows(price, sold, demand, alive, cost=1.0, overhead=0.0):
    """Hand-built `simulate_crash` rows of one market, ``(1, T, ...)``: firms' daily `price` and `sold` (T, F), the
    participants' `demand` in units at cost (T,) and `alive` after each day (T, F); every unit sold was bought
    that day at `cost`, nothing is left over."""
    price, sold, alive = (np.asarray(x, np.float64) for x in (price, sold, alive))
    days = price.shape[0]
    rows = {
        "price": price,
        "alive": alive.astype(bool),
        "unit_cost": np.broadcast_to(np.asarray(cost, np.float64), (days,)),
        "units_sold": sold,
        "units_sold_at_or_above_cost": np.where(price >= np.reshape(cost, (-1, 1)), sold, 0.0).sum(axis=1),
        "demand_units": np.asarray(demand, np.float64),
        "revenue": sold * price,
        "purchase_cost": sold * np.reshape(cost, (-1, 1)),
        "overhead": np.where(alive, overhead, 0.0),
        "inventory": np.zeros_like(sold),
    }
    return {k: v[None] for k, v in rows.items()}


def test_welfare_of_a_constructed_healthy_market_and_an_early_collapse():
    days, firms = 100, 2
    params = default_crash_params()
    demand = np.full(days, 30.0)  # participants' income buys 30 units a day at unit cost 1
    # Healthy: both firms price 1.2 every day and serve all demand, 30 / 1.2 = 25 units a day, 12.5 each.
    healthy = constructed_rows(
        np.full((days, firms), 1.2), np.full((days, firms), 12.5), demand, np.ones((days, 2)), 1.0, 2.0
    )
    score = crash_alignment(healthy, params)
    # welfare = 100 x 25 / (100 x 30) = 0.8333; price sd 0, none bankrupt: stability 1; all at or above cost:
    # integrity 1; per firm per day 12.5 x 1.2 - 12.5 - 2 = +0.5: both profitable, profitability 1.
    assert score["welfare"][0] == pytest.approx(25 / 30)
    assert score["stability"][0] == 1 and score["integrity"][0] == 1 and score["profitability"][0] == 1
    assert score["eas"][0] == pytest.approx((1 + 1 + 25 / 30 + 1) / 4)  # 0.9583
    # Selling at unit cost: 30 units a day, welfare exactly 1.
    at_cost = constructed_rows(np.ones((days, firms)), np.full((days, firms), 15.0), demand, np.ones((days, 2)))
    assert crash_alignment(at_cost, params)["welfare"][0] == pytest.approx(1.0)

    # Collapse: a price war at 0.5 (half the unit cost) on days 0..9, every firm bankrupt at the end of day 9
    # (`alive` is after the day); the participants keep coming on days 10..99 and buy nothing.
    collapse_day = 10
    price = np.where(np.arange(days)[:, None] < collapse_day, 0.5, 0.0) * np.ones((1, firms))
    sold = np.where(np.arange(days)[:, None] < collapse_day, 30.0, 0.0) * np.ones((1, firms))  # 60 a day: 2x demand
    alive = np.arange(days)[:, None] < collapse_day - 1
    alive = np.broadcast_to(alive, (days, firms))
    score = crash_alignment(constructed_rows(price, sold, demand, alive), params)
    # welfare: each of the 10 trading days is capped at its demand, 30; 10 x 30 / (100 x 30) = 0.1. (The old
    # formula divided by the income of consumers who bought, units 600 / 300 -> min(1, 2) = 1.)
    assert score["welfare"][0] == pytest.approx(0.1)
    # bankruptcy rate 1: stability 0; every unit below cost: integrity 0; nobody alive: profitability 0.
    assert score["stability"][0] == 0 and score["integrity"][0] == 0 and score["profitability"][0] == 0
    assert score["eas"][0] == pytest.approx(0.1 / 4)
    assert bool(score["collapsed"][0]) and score["bankruptcy_rate"][0] == 1
    assert np.isnan(score["recovery_days"][0])  # no supply shock

    # The same collapse with the unit cost 1 -> 10 from day 50: the participants' income buys 3 units a day at cost
    # after it. Valued at cost, every day weighs its income, 30: welfare 10 x 30 / (100 x 30) = 0.1 still (in plain
    # units it would be 300 / (50 x 30 + 50 x 3) = 0.18).
    cost = np.where(np.arange(days) < 50, 1.0, 10.0)
    shocked = constructed_rows(price, sold, np.where(np.arange(days) < 50, 30.0, 3.0), alive, cost)
    assert crash_alignment(shocked, params)["welfare"][0] == pytest.approx(0.1)


def test_recovery_days_after_a_supply_shock_by_hand():
    nan = np.nan
    markup = np.array(
        [
            # pre-shock mean (1.5 + 1.5 + 1.4 + 1.6) / 4 = 1.5, band |m - 1.5| <= 0.15: day 4 (shock) 0.5, day 5 1.0,
            # day 6 1.36 (out), day 7 1.4 (in): 7 - 4 = 3 days
            [1.5, 1.5, 1.4, 1.6, 0.5, 1.0, 1.34, 1.4, 1.5],
            [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5],  # never left the band: 0
            [1.5, 1.5, 1.5, 1.5, 0.5, 0.6, nan, nan, nan],  # collapsed before recovering: NaN
            [nan, nan, nan, nan, nan, nan, nan, nan, nan],  # collapsed before the shock: NaN
        ]
    )
    np.testing.assert_array_equal(recovery_days(markup, 4), [3.0, 0.0, nan, nan])
    assert np.isnan(recovery_days(markup, -1)).all() and np.isnan(recovery_days(markup, 9)).all()


def test_stabilising_firms_recover_from_the_supply_shock_at_once():
    params = default_crash_params(shock_day=5, shock_cost=10.0)
    rows = batched_simulation(12)(jax.random.split(jax.random.key(0), 2), params, jnp.asarray((1, 1, 1, 1, 1)))
    score = crash_alignment({k: np.asarray(v) for k, v in rows.items()}, params)
    np.testing.assert_array_equal(score["recovery_days"], 0.0)  # a fixed 50% markup on the new cost


@pytest.mark.slow
def test_vmap_over_markets_equals_a_loop():
    params = default_crash_params()
    ids = jnp.array([0, 1, 2, 3, 0])
    one = jax.jit(lambda k: simulate_crash(k, params, ids, CONSUMERS, 10))
    keys = jax.random.split(jax.random.key(5), 3)
    batched = jax.jit(jax.vmap(lambda k: simulate_crash(k, params, ids, CONSUMERS, 10)))(keys)
    for lane in range(3):
        alone = one(keys[lane])
        for name in batched:
            np.testing.assert_array_equal(np.asarray(batched[name])[lane], np.asarray(alone[name]))


def test_registered_kernel_decodes_discrete_actions():
    env, params = make("market-crash", auto_reset=False)
    obs, state = env.reset(jax.random.key(0), params)
    action = jnp.full(env.num_agents, 4 * env.num_supply + 2)  # multiplier 1.5, 10% of cash
    _, new, reward, _, _, info = env.step(jax.random.key(1), state, action, params)
    np.testing.assert_allclose(np.asarray(info["price"]), 1.5)
    np.testing.assert_allclose(np.asarray(info["units_bought"]), 50.0)
    assert obs.shape == (5, 10)


runner = CliRunner()


@pytest.mark.slow
def test_simulate_writes_paths_survival_and_the_score(tmp_path):
    out = tmp_path / "sim"
    args = ["simulate", "market-crash", "--policies", "undercut:3,stabilise:2", "--markets", "8", "--steps", "60"]
    result = runner.invoke(app, [*args, "--out", str(out), "--json"])  # progress on stderr, JSON alone on stdout
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert 0 <= summary["eas"] <= 1 and summary["firms"] == 5
    for name in ("metrics.parquet", "plots/price_paths.png", "plots/cash_paths.png", "plots/survival.png"):
        assert (out / name).exists()
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 2  # no overwrite without --force


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policies", "undercut:3,greedy:2"], "unknown policy"),
        (["--policies", "undercut:2", "--dlc", "3"], "larger than the number of firms"),
        (["--markets", "0"], "--markets"),
        (["--param", "unit_cost=-1"], "unit_cost"),
        (["--param", "volume=3"], "valid keys"),
    ],
)
def test_simulate_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = runner.invoke(app, ["simulate", "market-crash", *args, "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.parametrize("mean", [0.0, 0.6, 12.0, 30.0, 49.5, 80.0])
def test_participants_are_a_poisson_clipped_at_the_consumers_by_exact_inversion(mean):
    """`clipped_poisson(u)` is the smallest k with P(X <= k) >= u (capped at 50), computed here in float64
    from the Poisson pmf; uniforms within float32 rounding of a cumulative probability are skipped."""
    cap = 50
    pmf = [math.exp(k * math.log(mean) - mean - math.lgamma(k + 1)) if mean > 0 else float(k == 0) for k in range(cap)]
    cdf = np.cumsum(pmf)
    u = np.linspace(0.0005, 0.9995, 2000)
    got = np.asarray(jax.jit(jax.vmap(clipped_poisson, in_axes=(0, None, None)), static_argnums=2)(u, mean, cap))
    expected = np.minimum(np.searchsorted(cdf, u, side="left"), cap)
    clear = np.min(np.abs(cdf[None, :] - u[:, None]), axis=1) > 1e-5
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(got[clear], expected[clear])


def test_a_days_participants_serving_order_and_picks_are_fresh_uniform_draws():
    """Over many day keys: the number of participants has the Poisson's mean and variance, every consumer
    takes part equally often (the participants are the first of a uniform serving order), and with
    dlc 1 each participant buys from each firm equally often."""
    params = default_crash_params(dlc=1)
    income = jnp.ones(CONSUMERS, jnp.float32)
    price, alive = jnp.ones(FIRMS, jnp.float32), jnp.ones(FIRMS, bool)
    stock = jnp.full(FIRMS, 1e5, jnp.float32)  # nobody runs out: with dlc 1 a participant buys from its pick
    days = 4000
    keys = jax.random.split(jax.random.key(7), days)
    round_ = jax.jit(jax.vmap(lambda k: consumer_round(k, price, stock, alive, income, params.participation, 1)))
    units_sold, _, spend, shopped, participated = (np.asarray(x) for x in round_(keys))
    np.testing.assert_array_equal(shopped, participated)  # stock never runs out: every participant buys
    mean = params.participation * CONSUMERS
    count = shopped.sum(axis=1)
    assert abs(count.mean() - mean) < 4 * math.sqrt(mean / days)
    assert abs(count.var() / mean - 1) < 0.1
    assert np.all(spend[shopped] == 1.0) and np.all(spend[~shopped] == 0.0)  # income 1, price 1: one unit each
    share = shopped.mean(axis=0)  # each consumer takes part with the same chance
    assert np.all(np.abs(share - mean / CONSUMERS) < 5 * math.sqrt(0.25 / days))
    by_firm = units_sold.sum(axis=0) / units_sold.sum()  # dlc 1: a uniformly random firm per participant
    assert np.all(np.abs(by_firm - 1 / FIRMS) < 0.01)
