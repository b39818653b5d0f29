"""The distributions of the MinAtar games' random elements, against MinAtar 1.0.15 (the oracle; GPL-3.0, only called).

The lockstep parity tests replay our draws into MinAtar, so they check the rules but not the draws themselves. Here
each random element MinAtar draws is sampled many times from our kernel (`vmap` over keys: a reset, or a few steps
with a fixed action) and from the real MinAtar (a fresh `np.random.RandomState` per sample), and both samples are
compared with the exact probabilities read off MinAtar's source (quoted at each test) and with each other:

- in both samples, every category's count passes an exact binomial test against its exact probability, at
  significance `ALPHA` = 1e-4 for the whole table (Bonferroni over its categories), and categories of probability 0
  (a lane, column or direction MinAtar never produces) do not occur at all; for joint outcomes (lane, side, kind) the
  same holds for each coordinate's marginal;
- our sample and MinAtar's have the same distribution: a chi-square test of homogeneity gives p > `ALPHA`.

Keys and seeds are fixed, so the tests are deterministic. MinAtar's RandomState for seed s is seeded through
`SeedSequence` (``RandomState(MT19937(s))``): with plain consecutive integer seeds (``RandomState(s)``) the draws at
one position of the stream are not independent enough across seeds (Freeway's re-drawn speed of car 0 was -5 in 11.2%
of seeds 0..9999, +4.1 SE, and +2.0 to +2.6 SE on the next 50,000 seeds; none of that with `SeedSequence`).

Every test also applies the same check to a deliberately wrong sample (a kernel run with a biased probability, or a
sample shifted by one lane or column) and asserts that it is rejected: the checks can fail on exactly the errors they
are meant to catch.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import binom, chi2_contingency

from agentlab.kernels import make

import oracle

ALPHA = 1e-4  # significance of every check (a right sample fails one with probability below ALPHA)
N_OURS = 20_000  # JAX samples per test (one vmap)
N_MINATAR = 8_000  # MinAtar samples per test (one numpy seed each)
N_DETERMINISTIC = 500  # keys per deterministic game
NOOP, UP = 0, 2  # full-action-set indices (MinAtar's action_map)


# ---------------------------------------------------------------------------------------------- statistics
def _categories(samples) -> list:
    return [tuple(row) if isinstance(row, (list, tuple, np.ndarray)) else row for row in np.asarray(samples).tolist()]


def _tables(samples: list, exact: dict) -> list[tuple[str, list, dict]]:
    """``(label, samples, exact)``: the joint table and, for tuple categories, each coordinate's marginal."""
    tables = [("", samples, exact)]
    if isinstance(next(iter(exact)), tuple):
        for i in range(len(next(iter(exact)))):
            marginal: dict = {}
            for c, p in exact.items():
                marginal[c[i]] = marginal.get(c[i], 0.0) + p
            tables.append((f"coordinate {i} = ", [c[i] for c in samples], marginal))
    return tables


def distribution_errors(samples, exact: dict) -> list[str]:
    """Why the sample's category frequencies do not fit the exact probabilities (none: they fit).

    A category that `exact` lacks (probability 0) must not occur; every other category's count passes an exact
    binomial test (two-sided: twice the smaller tail) at ``ALPHA / (number of categories tested)``, so that a right
    sample fails with probability below `ALPHA`. Tuple categories (joint outcomes) are tested jointly and per
    coordinate: a small bias in one coordinate (a side drawn with prob. 0.53) is spread thin over the joint categories
    but plain in its marginal."""
    samples = _categories(samples)
    tables = _tables(samples, exact)
    level = ALPHA / sum(len(e) for _, _, e in tables)
    errors = []
    for what, column, probs in tables:
        assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-12), "the exact probabilities must sum to 1"
        n, counts = len(column), Counter(column)
        errors += [f"{what}{c}: {counts[c]} of {n} but impossible" for c in sorted(set(counts) - set(probs), key=str)]
        cats = list(probs)
        k, p = np.array([counts.get(c, 0) for c in cats]), np.array([probs[c] for c in cats])
        p_value = np.minimum(1.0, 2 * np.minimum(binom.cdf(k, n, p), binom.sf(k - 1, n, p)))
        for c, kc, pc, pv in zip(cats, k, p, p_value):
            if pv < level:
                z = (kc / n - pc) / math.sqrt(pc * (1 - pc) / n)
                errors.append(f"{what}{c}: frequency {kc / n:.4f}, exact {pc:.4f} ({z:+.1f} SE, p = {pv:.1g})")
    return errors


def homogeneity_p(a, b) -> float:
    """p-value of the chi-square test that samples `a` and `b` come from one distribution."""
    a, b = Counter(_categories(a)), Counter(_categories(b))
    cats = sorted(set(a) | set(b))
    if len(cats) == 1:
        return 1.0
    return float(chi2_contingency(np.array([[a[c] for c in cats], [b[c] for c in cats]])).pvalue)


def assert_fits(what: str, ours, theirs, exact: dict) -> None:
    errors = distribution_errors(ours, exact)
    assert not errors, f"{what}, ours: " + "; ".join(errors[:6])
    errors = distribution_errors(theirs, exact)
    assert not errors, f"{what}, MinAtar (so the exact probabilities are misread): " + "; ".join(errors[:6])
    p = homogeneity_p(ours, theirs)
    assert p > ALPHA, f"{what}: ours and MinAtar's samples differ (chi-square p = {p:.2g})"


def assert_rejected(what: str, wrong, theirs, exact: dict) -> None:
    """Negative control: `assert_fits` fails on a wrong sample, and already its exact-probability check does (the
    homogeneity test, against MinAtar's smaller sample, has less power)."""
    assert distribution_errors(wrong, exact), f"{what}: a wrong sample passed the exact-probability check"
    with pytest.raises(AssertionError):
        assert_fits(what, wrong, theirs, exact)


def test_the_checks_accept_right_and_reject_wrong_samples():
    rng = np.random.default_rng(0)
    exact = {k: 1 / 8 for k in range(1, 9)}
    right, other = rng.integers(1, 9, N_OURS), rng.integers(1, 9, N_MINATAR)
    assert_fits("uniform lanes", right, other, exact)
    assert_rejected("lanes 0..7", rng.integers(0, 8, N_OURS), other, exact)
    assert_rejected("lanes 1..7", rng.integers(1, 8, N_OURS), other, exact)
    assert_rejected("lane 1 at 0.14", rng.choice(np.arange(1, 9), N_OURS, p=[0.14] + [0.86 / 7] * 7), other, exact)


# ---------------------------------------------------------------------------------------------- sampling
@functools.cache
def _env(name: str):
    """``(env, params, reset, step)``: reset and step batched over keys, each compiled once per module."""
    env, params = make(name, auto_reset=False, full_action_set=True)
    reset = jax.jit(jax.vmap(lambda key, p: env.reset(key, p)[1], in_axes=(0, None)))
    step = jax.jit(jax.vmap(lambda key, s, a, p: env.step(key, s, a, p)[1], in_axes=(0, 0, None, None)))
    return env, params, reset, step


def _keys(seed: int, t: int, n: int = N_OURS) -> jax.Array:
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), t), n)


def ours(name: str, steps: int, record=(), action: int = NOOP, params=None, seed: int = 0, state=None):
    """Our game states over `N_OURS` keys: after the reset (or from `state`) and after each step index in `record`
    (steps taken with the fixed `action`), as numpy pytrees."""
    _, default, reset, step = _env(name)
    params = default if params is None else params
    state = reset(_keys(seed, 0), params) if state is None else state
    out = {"reset": state.game}
    for t in range(steps):
        state = step(_keys(seed, t + 1), state, jnp.int32(action), params)
        if t in record:
            out[t] = state.game
    return {k: jax.tree.map(np.asarray, v) for k, v in out.items()}


def minatar(name: str, steps: int, record=(), action: int = NOOP, before=None):
    """Per seed, MinAtar's game after its reset (plus `before(env)`) and after each step index in `record`: a list
    (one entry per seed) of dicts `{"reset" or t: read(env)}` where read picks the game's random elements."""
    env = importlib.import_module(f"minatar.environments.{name.replace('-', '_')}").Env()
    read = _READ[name]
    samples = []
    for seed in range(N_MINATAR):
        env.random = np.random.RandomState(np.random.MT19937(seed))  # see the module docstring
        env.reset()
        if before is not None:
            before(env)
        got = {"reset": read(env)}
        for t in range(steps):
            env.act(action)
            if t in record:
                got[t] = read(env)
        samples.append(got)
    return samples


_READ = {
    "breakout": lambda e: (e.ball_x, e.ball_y, e.ball_dir),
    "asterix": lambda e: [None if x is None else (x[1], x[0], bool(x[2]), bool(x[3])) for x in e.entities],
    "freeway": lambda e: [car[3] for car in e.cars],
    "seaquest": lambda e: {
        "enemies": [(f[1], f[0], bool(f[2]), False) for f in e.e_fish]
        + [(s[1], s[0], bool(s[2]), True) for s in e.e_subs],
        "divers": [(d[1], d[0], bool(d[2])) for d in e.divers],
    },
}


def _one(items: list):
    assert len(items) == 1, f"expected exactly one entity, got {items}"
    return items[0]


# ---------------------------------------------------------------------------------------------- breakout
def test_breakout_ball_start():
    """MinAtar `reset`: ``ball_start = randint(2)``; ``(ball_x, ball_dir) = [(0, 2), (9, 3)][ball_start]``,
    ``ball_y = 3``: column 0 heading down-right or column 9 heading down-left, 1/2 each."""
    g = ours("breakout", 0)["reset"]
    got = np.stack([g.ball_x, g.ball_y, g.ball_dir], 1)
    theirs = [s["reset"] for s in minatar("breakout", 0)]
    exact = {(0, 3, 2): 1 / 2, (9, 3, 3): 1 / 2}
    assert_fits("breakout ball start", got, theirs, exact)

    flipped = got.copy()
    flipped[: N_OURS // 25] = (9, 3, 3)  # 4% of column-0 starts moved to column 9: a biased coin
    assert_rejected("breakout, biased start", flipped, theirs, exact)
    mirrored = got.copy()
    mirrored[:, 2] = 5 - mirrored[:, 2]  # column 0 heading down-left: directions swapped
    assert_rejected("breakout, swapped directions", mirrored, theirs, exact)


# ---------------------------------------------------------------------------------------------- asterix
# MinAtar `_spawn_entity`: ``lr = rand() < 1/2``, ``is_gold = rand() < 1/3``, ``x = 0 if lr else 9``, ``slot =
# free_slots[randint(len(free_slots))]`` (row slot + 1). With ``spawn_timer = spawn_speed = 10`` at reset entities
# spawn in steps 10 and 20; with ``move_timer = move_speed = 5`` they move in steps 5, 10, 15, 20, after the spawn, so
# a new entity is at column 1 (it entered at 0, moving right) or 8. The player stays at (5, 5) (noop): nothing is
# picked up, hit or gone before step 20.
ASTERIX_FIRST = {
    (row, 1 if lr else 8, lr, gold): (1 / 8) * (1 / 2) * (1 / 3 if gold else 2 / 3)
    for row in range(1, 9)
    for lr in (True, False)
    for gold in (True, False)
}
ASTERIX_ROWS = {(a, b): 1 / 56 for a in range(1, 9) for b in range(1, 9) if a != b}  # the second: a free row


def _asterix_ours(params=None):
    """Per key: the first entity's (row, x, moving right, gold) and the rows of the first two."""
    run = ours("asterix", 21, record=(9, 10, 19, 20), params=params)
    assert not run[9].active.any() and (run[19].active == run[10].active).all()

    def spawned(g, new):
        assert (new.sum(1) == 1).all(), "exactly one entity spawns"
        slot = new.argmax(1)
        pick = lambda a: np.take_along_axis(a, slot[:, None], 1)[:, 0]  # noqa: E731
        return slot + 1, pick(g.x), pick(g.right), pick(g.gold)

    row1, x1, right1, gold1 = spawned(run[10], run[10].active)
    row2, *_ = spawned(run[20], run[20].active & ~run[10].active)
    return np.stack([row1, x1, right1, gold1], 1), np.stack([row1, row2], 1)


@functools.cache
def _asterix():
    """``(ours, MinAtar's)`` first entities and row pairs."""
    first, rows = [], []
    for s in minatar("asterix", 21, record=(9, 10, 19, 20)):
        assert s[9] == [None] * 8 and [x is None for x in s[19]] == [x is None for x in s[10]]
        a = _one([x for x in s[10] if x is not None])
        b = _one([x for x, y in zip(s[20], s[10]) if x is not None and y is None])
        first.append(a)
        rows.append((a[0], b[0]))
    return _asterix_ours(), (first, rows)


def test_asterix_spawn_lane_side_and_kind():
    (got, _), (theirs, _) = _asterix()
    assert_fits("asterix first spawn (row, x, moving right, gold)", got, theirs, ASTERIX_FIRST)

    env, params, _, _ = _env("asterix")
    for change in ({"left_prob": 0.53}, {"gold_prob": 0.36}):  # the kernel itself, with a biased probability
        biased = params.replace(game=params.game.replace(**change))
        assert_rejected(f"asterix with {change}", _asterix_ours(biased)[0], theirs, ASTERIX_FIRST)
    shifted = got.copy()
    shifted[:, 0] -= 1  # rows 0..7 instead of 1..8
    assert_rejected("asterix rows shifted", shifted, theirs, ASTERIX_FIRST)
    inverted = got.copy()
    inverted[:, 1] = 9 - inverted[:, 1]  # entering at the edge it moves towards
    assert_rejected("asterix wrong edge", inverted, theirs, ASTERIX_FIRST)


def test_asterix_spawn_row_is_uniform_over_free_rows():
    (_, got), (_, theirs) = _asterix()
    assert_fits("asterix (first row, second row)", got, theirs, ASTERIX_ROWS)

    any_row = got.copy()
    any_row[:, 1] = np.random.default_rng(1).integers(1, 9, N_OURS)  # a row drawn over all rows, taken or not
    assert_rejected("asterix second row ignores taken rows", any_row, theirs, ASTERIX_ROWS)


# ---------------------------------------------------------------------------------------------- freeway
# MinAtar `_randomize_cars`: ``speeds = randint(1, 6, 8)``, ``directions = sign(rand(8) - 0.5)``, ``speeds *=
# directions``: each car's signed speed is uniform over -5..-1, 1..5 (1/10 each), independently across the cars.
# It runs at reset and when the chicken reaches the top (then the chicken returns to row 9; cars keep their place).
FREEWAY_CAR = {(right, speed): 1 / 10 for right in (True, False) for speed in range(1, 6)}  # (moving right, |speed|)
SIGNED = (*range(-5, 0), *range(1, 6))
FREEWAY_PAIR = {(a, b): 1 / 100 for a in SIGNED for b in SIGNED}  # two cars' signed speeds


def _car(speeds):
    return np.stack([speeds > 0, np.abs(speeds)], -1)


def _freeway_checks(what, speeds, theirs):
    for car in range(8):
        assert_fits(f"{what}, car {car} (right, speed)", _car(speeds[:, car]), _car(theirs[:, car]), FREEWAY_CAR)
    for a, b in ((0, 1), (3, 7)):  # independent across cars, not one draw shared
        assert_fits(f"{what}, cars {a}, {b}", speeds[:, [a, b]], theirs[:, [a, b]], FREEWAY_PAIR)


def test_freeway_car_speeds_and_directions_at_reset():
    speeds = ours("freeway", 0)["reset"].car_speed
    theirs = np.array([s["reset"] for s in minatar("freeway", 0)])
    _freeway_checks("freeway reset", speeds, theirs)

    car0, theirs0 = speeds[:, 0], _car(theirs[:, 0])
    assert_rejected("freeway without speed 5", _car(np.where(np.abs(car0) == 5, car0 // 5, car0)), theirs0, FREEWAY_CAR)
    rightward = car0.copy()
    rightward[: N_OURS // 25] = np.abs(rightward[: N_OURS // 25])  # 52% of cars drive right
    assert_rejected("freeway biased direction", _car(rightward), theirs0, FREEWAY_CAR)
    shared = speeds.copy()
    shared[:, 1] = shared[:, 0]  # two cars sharing one draw
    assert_rejected("freeway shared draw", shared[:, :2], theirs[:, :2], FREEWAY_PAIR)


def test_freeway_speeds_are_redrawn_on_reaching_the_top():
    """One step up from row 1 with the chicken ready to move reaches the top and re-draws every car."""
    _, params, reset, _ = _env("freeway")
    start = reset(_keys(1, 0), params)
    start = start.replace(game=start.game.replace(pos=jnp.ones_like(start.game.pos), move_timer=0 * start.game.pos))
    run = ours("freeway", 1, record=(0,), action=UP, seed=2, state=start)
    assert (run[0].pos == 9).all()
    speeds = run[0].car_speed

    def ready(e):
        e.pos, e.move_timer = 1, 0

    theirs_run = minatar("freeway", 1, record=(0,), action=UP, before=ready)
    theirs = np.array([s[0] for s in theirs_run])
    _freeway_checks("freeway crossing", speeds, theirs)
    # Re-drawn, not kept: the speeds after are independent of those before (kept speeds would pass the checks above).
    before, theirs_before = run["reset"].car_speed, np.array([s["reset"] for s in theirs_run])
    pairs, theirs_pairs = np.stack([before[:, 0], speeds[:, 0]], 1), np.stack([theirs_before[:, 0], theirs[:, 0]], 1)
    assert_fits("freeway car 0 (before, after)", pairs, theirs_pairs, FREEWAY_PAIR)
    assert_rejected("freeway speeds kept", np.stack([before[:, 0], before[:, 0]], 1), theirs_pairs, FREEWAY_PAIR)


# ---------------------------------------------------------------------------------------------- seaquest
# MinAtar `_spawn_enemy`: ``lr = rand() < 1/2``, ``is_sub = rand() < 1/3``, ``x = 0 if lr else 9``, ``y = randint(1,
# 9)``, skipped if an enemy in row y moves the other way. `_spawn_diver`: ``lr = rand() < 1/2``, ``y = randint(1,
# 9)``. With the sub at the surface (noop) the first enemy spawns in step 20 (``e_spawn_timer = 20``), the first
# diver in step 30 (``d_spawn_timer = 30``), the second enemy in step 40 while the first (moving every 6 steps) is
# still on the board: it is skipped (same row, other way) with prob. 1/8 * 1/2, in the first's row the same way with
# prob. 1/16, in another row with prob. 7/8.
SEAQUEST_ENEMY = {
    (row, 0 if lr else 9, lr, sub): (1 / 8) * (1 / 2) * (1 / 3 if sub else 2 / 3)
    for row in range(1, 9)
    for lr in (True, False)
    for sub in (True, False)
}
SEAQUEST_DIVER = {(row, 0 if lr else 9, lr): 1 / 16 for row in range(1, 9) for lr in (True, False)}
SEAQUEST_SECOND = {"skipped": 1 / 16, "same row, same way": 1 / 16, "other row": 7 / 8}


def _second(row1, right1, new, row2, right2):
    """How the second enemy spawn went, relative to the first enemy (still on the board)."""
    other = np.where(right2 == right1, "same row, same way", "same row, other way")
    return np.where(~new, "skipped", np.where(row2 != row1, "other row", other))


def _spawned(g, new, *fields):
    assert (new.sum(1) == 1).all(), "exactly one spawns"
    slot = new.argmax(1)[:, None]
    return np.stack([np.take_along_axis(getattr(g, f), slot, 1)[:, 0] for f in fields], 1)


ENEMY_FIELDS, DIVER_FIELDS = ("enemy_y", "enemy_x", "enemy_right", "enemy_sub"), ("diver_y", "diver_x", "diver_right")


def _seaquest_ours():
    """Per key: the first enemy's (row, x, moving right, sub), the first diver's (row, x, moving right) and how the
    second enemy spawn went."""
    run = ours("seaquest", 41, record=(19, 20, 29, 30, 39, 40))
    assert not run[19].enemy_active.any() and not run[29].diver_active.any()
    first = _spawned(run[20], run[20].enemy_active, *ENEMY_FIELDS)
    diver = _spawned(run[30], run[30].diver_active, *DIVER_FIELDS)
    assert (run[39].enemy_active == run[20].enemy_active).all(), "the first enemy is still there, alone"
    new = run[40].enemy_active & ~run[39].enemy_active
    slot = new.argmax(1)[:, None]
    row2, right2 = (np.take_along_axis(getattr(run[40], f), slot, 1)[:, 0] for f in ("enemy_y", "enemy_right"))
    return first, diver, _second(first[:, 0], first[:, 2].astype(bool), new.any(1), row2, right2)


@functools.cache
def _seaquest():
    """``(ours, MinAtar's)``, each as `_seaquest_ours` returns them."""
    first, diver, new, row2, right2 = [], [], [], [], []
    for s in minatar("seaquest", 41, record=(19, 20, 29, 30, 39, 40)):
        assert not s[19]["enemies"] and not s[29]["divers"]
        first.append(_one(s[20]["enemies"]))
        diver.append(_one(s[30]["divers"]))
        assert len(s[39]["enemies"]) == 1, "the first enemy is still there, alone"
        spawned = [e for e in s[40]["enemies"] if e[1] in (0, 9)]  # the first has moved off its edge by now
        new.append(bool(spawned))
        row2.append(_one(spawned)[0] if spawned else 0)
        right2.append(_one(spawned)[2] if spawned else False)
    first = np.array(first)
    second = _second(first[:, 0], first[:, 2].astype(bool), np.array(new), np.array(row2), np.array(right2))
    return _seaquest_ours(), (first, np.array(diver), second)


def _seaquest_spawn_now(params):
    """Per key, with `params`: the enemy and the diver spawned in one step from a reset whose spawn timers are 0 (as
    in steps 20 and 30 above; the negative controls need no 41 steps)."""
    _, _, reset, _ = _env("seaquest")
    start = reset(_keys(5, 0), params)
    zero = jnp.zeros_like(start.game.spawn_timer)
    start = start.replace(game=start.game.replace(spawn_timer=zero, diver_timer=zero))
    g = ours("seaquest", 1, record=(0,), params=params, seed=6, state=start)[0]
    return _spawned(g, g.enemy_active, *ENEMY_FIELDS), _spawned(g, g.diver_active, *DIVER_FIELDS)


def test_seaquest_enemy_spawns():
    (got, _, got_second), (theirs, _, theirs_second) = _seaquest()
    assert_fits("seaquest first enemy (row, x, moving right, sub)", got, theirs, SEAQUEST_ENEMY)
    assert_fits("seaquest second enemy", got_second, theirs_second, SEAQUEST_SECOND)

    env, params, _, _ = _env("seaquest")
    assert_fits("seaquest enemy spawned at once", _seaquest_spawn_now(params)[0], theirs, SEAQUEST_ENEMY)
    for change in ({"left_prob": 0.53}, {"sub_prob": 0.36}):  # the kernel itself, with a biased probability
        biased = params.replace(game=params.game.replace(**change))
        assert_rejected(f"seaquest with {change}", _seaquest_spawn_now(biased)[0], theirs, SEAQUEST_ENEMY)
    shifted = got.copy()
    shifted[:, 0] = np.minimum(got[:, 0], 7)  # row 8 never used (row 7 twice as often)
    assert_rejected("seaquest rows 1..7", shifted, theirs, SEAQUEST_ENEMY)
    unblocked = np.where(got_second == "skipped", "same row, same way", got_second)  # no blocking rule
    assert_rejected("seaquest without blocking", unblocked, theirs_second, SEAQUEST_SECOND)


def test_seaquest_diver_spawns():
    (_, got, _), (_, theirs, _) = _seaquest()
    assert_fits("seaquest first diver (row, x, moving right)", got, theirs, SEAQUEST_DIVER)

    shifted = got.copy()
    shifted[:, 0] += 1  # rows 2..9
    assert_rejected("seaquest diver rows shifted", shifted, theirs, SEAQUEST_DIVER)
    env, params, _, _ = _env("seaquest")
    assert_fits("seaquest diver spawned at once", _seaquest_spawn_now(params)[1], theirs, SEAQUEST_DIVER)
    biased = params.replace(game=params.game.replace(left_prob=0.53))
    assert_rejected("seaquest diver side biased", _seaquest_spawn_now(biased)[1], theirs, SEAQUEST_DIVER)


# ---------------------------------------------------------------------------------------------- deterministic games
def _distinct(states) -> int:
    """How many different states the lanes (leading axis) hold."""
    leaves = [np.asarray(x).reshape(len(x), -1) for x in jax.tree.leaves(states)]
    return len(np.unique(np.concatenate(leaves, 1), axis=0))


@pytest.mark.parametrize("name", ["space-invaders", "breakout"])
def test_deterministic_dynamics_draw_nothing(name):
    """MinAtar's Space Invaders never calls its RandomState, nor Breakout's `act` (only its reset): with an empty
    script any draw would fail. Ours agree: from one start state, every key gives the same states."""
    rng = np.random.default_rng(3)
    actions = [int(a) for a in rng.integers(0, 6, 60)]
    e = oracle.minatar_env(name)
    e.random.push(*([("randint", 0)] if name == "breakout" else []))
    e.reset()
    for a in actions:
        e.act(a)
        e.random.assert_drained()

    _, params, reset, step = _env(name)
    state = reset(_keys(4, 0, N_DETERMINISTIC), params)
    if name == "breakout":  # one start for every lane: the reset itself is random
        state = jax.tree.map(lambda x: jnp.broadcast_to(x[0], x.shape), state)
    assert _distinct(state.game) == 1
    for t, a in enumerate(actions):
        state = step(_keys(4, t + 1, N_DETERMINISTIC), state, jnp.int32(a), params)
        assert _distinct(state.game) == 1, f"{name}: states differ across keys after step {t}"

    # Negative control: a random game's lanes do differ.
    _, asterix_params, asterix_reset, asterix_step = _env("asterix")
    s = asterix_reset(_keys(4, 0), asterix_params)
    for t in range(12):
        s = asterix_step(_keys(4, t + 1), s, jnp.int32(0), asterix_params)
    assert _distinct(s.game) > 1
