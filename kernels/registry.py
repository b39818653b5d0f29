"""The kernel registry: `make`, `describe`, `registered_kernels` (re-exported by `agentlab.kernels`).

    >>> from agentlab.kernels import make
    >>> env, params = make("breakout", stochasticity="action:p=0.3")
    >>> obs, state = env.reset(jax.random.key(0), params)
    >>> obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

`make` wraps every kernel in `AutoReset` unless ``auto_reset=False``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from agentlab.errors import UsageError, choices
from agentlab.kernels.atari import GAMES, make_atari
from agentlab.kernels.atari import describe as describe_atari
from agentlab.kernels.control.maze2d import EPISODE_STEPS, LAYOUTS, MAZE2D_BOUNDS, REWARDS, Maze2d
from agentlab.kernels.control.maze2d import describe as describe_maze2d
from agentlab.kernels.control.pendulum import PENDULUM_BOUNDS, Pendulum
from agentlab.kernels.control.pendulum import describe as describe_pendulum
from agentlab.kernels.environment import AutoReset, Environment
from agentlab.kernels.grid.curtailment import GridCurtailment
from agentlab.kernels.grid.curtailment import describe as describe_grid
from agentlab.kernels.markets.calvano import Calvano
from agentlab.kernels.markets.calvano import describe as describe_calvano
from agentlab.kernels.markets.crash import MarketCrash
from agentlab.kernels.markets.crash import describe as describe_crash
from agentlab.kernels.markets.lemons.env import MarketLemons
from agentlab.kernels.markets.lemons.env import describe as describe_lemons
from agentlab.kernels.multi.coordination import Coordination
from agentlab.kernels.multi.coordination import describe as describe_coordination
from agentlab.kernels.multi.gems import GEMS_BOUNDS, make_gems
from agentlab.kernels.multi.gems import describe as describe_gems
from agentlab.kernels.names import canonical_id, split_external_id
from agentlab.kernels.toy.catch import Catch
from agentlab.kernels.toy.catch import describe as describe_catch
from agentlab.kernels.toy.point import POINT_BOUNDS, Point
from agentlab.kernels.toy.point import describe as describe_point
from agentlab.kernels.wrappers import apply_stochasticity
from agentlab.limits import Bound

Factory = Callable[..., tuple[Environment, Any]]

# Size options of the factories, bounded so a typo cannot ask for a kernel that cannot be built or held
# (the kernels' params fields are bounded by their own `env.validate_params`).
_COUNT = 4096  # agents, sellers, buyers, participants, consumers of one episode (lemons.MAX_AGENTS, grid's)
OPTION_BOUNDS: dict[str, dict[str, Bound]] = {
    "coordination": {
        "num_agents": Bound("num_agents", int, low=2, high=_COUNT, unit="agents"),
        "num_choices": Bound("num_choices", int, low=2, high=1024, unit="options"),
    },
    "gems": {k: GEMS_BOUNDS[k] for k in ("size", "num_blue", "num_red", "num_purple", "gem_limit")},
    "point": {"speed": POINT_BOUNDS["speed"]},
    "pendulum": dict(PENDULUM_BOUNDS),
    "maze2d": dict(MAZE2D_BOUNDS),
    "calvano": {
        "firms": Bound("firms", int, low=2, high=8, unit="firms"),
        "prices": Bound("prices", int, low=2, high=101, unit="price levels"),
    },
    "market-crash": {
        "firms": Bound("firms", int, low=1, high=64, unit="firms (crash.MAX_FIRMS)"),
        "consumers": Bound("consumers", int, low=1, high=_COUNT, unit="consumers"),
        "dlc": Bound("dlc", int, low=1, high=64, unit="firms each consumer compares"),
    },
    "market-lemons": {
        "sellers": Bound("sellers", int, low=1, high=_COUNT, unit="sellers"),
        "sybils": Bound("sybils", int, low=0, high=_COUNT, unit="Sybil identities"),
        "buyers": Bound("buyers", int, low=1, high=_COUNT, unit="buyers"),
        "dlc": Bound("dlc", int, low=1, high=_COUNT, unit="listings each buyer sees"),
    },
    "grid-curtailment": {
        "num_agents": Bound("num_agents", int, low=2, high=_COUNT, unit="participants"),
        "deadline": Bound("deadline", int, low=1, high=10_000, unit="negotiation rounds"),
        "substeps": Bound("substeps", int, low=1, high=100_000, unit="frequency steps per round"),
    },
}


# Every factory builds its params one way: ``env.validate_params(env.default_params().replace(**options))``
# (gems' `make_gems` too; the Atari games' `make_atari` builds `AtariParams` from the game's defaults).


def _make_coordination(num_agents: int = 3, num_choices: int = 4, max_steps: int | None = 32):
    env = Coordination(num_agents=num_agents, num_choices=num_choices)
    return env, env.validate_params(env.default_params().replace(max_steps=max_steps))


def _make_catch(max_steps: int | None = None):
    env = Catch()
    return env, env.validate_params(env.default_params().replace(max_steps=max_steps))


def _make_point(max_steps: int | None = 20, speed: float = 0.25):
    env = Point()
    return env, env.validate_params(env.default_params().replace(max_steps=max_steps, speed=speed))


def _make_pendulum(
    max_steps: int | None = 200,
    max_speed: float = 8.0,
    max_torque: float = 2.0,
    dt: float = 0.05,
    g: float = 10.0,
    m: float = 1.0,
    l: float = 1.0,  # noqa: E741 (gym's name for the length)
):
    env = Pendulum()
    physics = {"max_speed": max_speed, "max_torque": max_torque, "dt": dt, "g": g, "m": m, "l": l}
    return env, env.validate_params(env.default_params().replace(max_steps=max_steps, **physics))


def _make_maze2d(
    layout: str = "umaze",
    reward: str = "sparse",
    max_steps: int | None = None,
    dt: float = 0.1,
    damping: float = 5.0,
    force_scale: float = 5.0,
    max_speed: float = 2.0,
    goal_radius: float = 0.5,
):
    """`max_steps` None: the layout's D4RL episode length (`EPISODE_STEPS`: 300, 600, 800)."""
    if layout not in LAYOUTS:
        raise UsageError(f"layout of maze2d must be {choices(LAYOUTS)}, got {layout!r}")
    if reward not in REWARDS:
        raise UsageError(f"reward of maze2d must be {choices(REWARDS)}, got {reward!r}")
    env = Maze2d(layout)
    physics = {"dt": dt, "damping": damping, "force_scale": force_scale, "max_speed": max_speed}
    params = env.default_params().replace(
        reward=reward, goal_radius=goal_radius, max_steps=EPISODE_STEPS[layout] if max_steps is None else max_steps
    )
    return env, env.validate_params(params.replace(**physics))


def _make_calvano(firms: int = 2, prices: int = 15, max_steps: int | None = 100):
    env = Calvano(num_firms=firms, num_prices=prices)
    return env, env.validate_params(env.default_params().replace(max_steps=max_steps))


def _make_crash(firms: int = 5, consumers: int = 50, dlc: int = 3, max_steps: int | None = 365):
    env = MarketCrash(num_firms=firms, num_consumers=consumers)
    return env, env.validate_params(env.default_params().replace(dlc=dlc, max_steps=max_steps))


def _make_lemons(sellers: int = 12, sybils: int = 3, buyers: int = 12, dlc: int = 3, max_steps: int | None = 50):
    env = MarketLemons(num_sellers=sellers, num_buyers=buyers, view_size=max(1, min(dlc, sellers)))
    return env, env.validate_params(env.default_params().replace(num_sybil=sybils, dlc=dlc, max_steps=max_steps))


def _make_grid(num_agents: int = 5, deadline: int = 6, substeps: int = 600, max_steps: int | None = None):
    env = GridCurtailment(num_agents=num_agents, substeps=substeps)
    return env, env.validate_params(env.default_params().replace(deadline=deadline, max_steps=max_steps))


_REGISTRY: dict[str, tuple[Factory, Callable[[Any], dict]]] = {
    **{name: ((lambda n: lambda **kw: make_atari(n, **kw))(name), describe_atari) for name in GAMES},
    "coordination": (_make_coordination, describe_coordination),
    "gems": (make_gems, describe_gems),
    "catch": (_make_catch, describe_catch),
    "point": (_make_point, describe_point),
    "pendulum": (_make_pendulum, describe_pendulum),
    "maze2d": (_make_maze2d, describe_maze2d),
    "grid-curtailment": (_make_grid, describe_grid),
    "calvano": (_make_calvano, describe_calvano),
    "market-crash": (_make_crash, describe_crash),
    "market-lemons": (_make_lemons, describe_lemons),
}
_ATARI_OPTIONS = ("stochasticity", "max_steps", "full_action_set", "ramping")


def registered_kernels() -> tuple[str, ...]:
    """The names `make` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def _options(name: str) -> tuple[str, ...]:
    if name in GAMES:
        return _ATARI_OPTIONS
    return tuple(inspect.signature(_REGISTRY[name][0]).parameters)


def option_defaults(name: str) -> dict[str, Any]:
    """The options `make` takes for kernel `name` and their defaults (what ``--env-option`` may set)."""
    name = canonical_id(name)
    if split_external_id(name) is not None:  # gymnax:ID, jaxmarl:ID (`kernels/external.py`)
        from agentlab.kernels.external import external_option_defaults

        return external_option_defaults(name)
    if name not in _REGISTRY:
        raise UsageError(f"unknown kernel {name!r}: valid kernels are {choices(registered_kernels())}")
    if name in GAMES:
        return {"stochasticity": "plain", "max_steps": None, "full_action_set": False, "ramping": True}
    return {k: p.default for k, p in inspect.signature(_REGISTRY[name][0]).parameters.items()}


def _check_option_type(name: str, option: str, value: Any) -> None:
    """A kernel option's value must have its default's type (an int where the default is an int, a number
    where it is a float, a bool where it is a bool); None defaults and strings are checked by the kernel."""
    default = option_defaults(name).get(option)
    if option == "max_steps":
        return  # an int or None, checked in `make`
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        return
    if not ok:
        raise UsageError(
            f"option {option} of {name} must be {type(default).__name__} (default {default!r}), got {value!r}"
        )
    bound = OPTION_BOUNDS.get(name, {}).get(option)
    if bound is not None:
        bound.check(value, f"option {option} of {name}")


def make(name: str, *, auto_reset: bool = True, **options: Any) -> tuple[Environment, Any]:
    """Build a kernel by name: ``(env, params)``.

    Options (Atari-style games): ``stochasticity`` (a string such as ``"action:p=0.3"`` or a tuple of
    profiles), ``max_steps`` (None: no time limit, as in MinAtar), ``full_action_set`` (all six
    MinAtar actions instead of the game's minimal set), ``ramping`` (MinAtar's difficulty ramping).
    `coordination`: ``num_agents``, ``num_choices``, ``max_steps``. `catch`: ``max_steps``.
    `point`: ``max_steps``, ``speed``. `pendulum`: ``max_steps`` and the physics (``max_speed``, ``max_torque``,
    ``dt``, ``g``, ``m``, ``l``). `maze2d`: ``layout`` (umaze, medium, large), ``reward`` (sparse, dense),
    ``max_steps`` (None: the layout's D4RL length) and the physics (``dt``, ``damping``, ``force_scale``,
    ``max_speed``, ``goal_radius``). Every other kernel also takes ``stochasticity``: the generic profiles
    (``action``, ``sticky``, ``drift``, ``mask:kind=dropout`` on vector observations) through
    `agentlab.kernels.wrappers.Stochastic` (inside `AutoReset`; the plain kernel is not wrapped).

    External environments ``gymnax:ID`` and ``jaxmarl:ID`` (`agentlab.kernels.external.make_external`): ``max_steps``
    and the library's own settings.

    Raises `UsageError` (a `ValueError`) for an unknown name or option or an invalid value.
    """
    name = canonical_id(name)
    if split_external_id(name) is not None:  # gymnax:ID, jaxmarl:ID (`kernels/external.py`)
        from agentlab.kernels.external import make_external

        generic = options.pop("stochasticity", None)
        env, params = make_external(name, **options)
        env, params = apply_stochasticity(env, params, generic)
        return (AutoReset(env) if auto_reset else env), params
    if name not in _REGISTRY:
        raise UsageError(f"unknown kernel {name!r}: valid kernels are {choices(registered_kernels())}")
    valid = _options(name) if name in GAMES else (*_options(name), "stochasticity")
    for option, value in options.items():
        if option not in valid:
            raise UsageError(f"unknown option {option!r} for {name}: valid options are {choices(valid)}")
        _check_option_type(name, option, value)
    max_steps = options.get("max_steps")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise UsageError(f"max_steps must be a positive integer or None, got {max_steps!r}")
    generic = options.pop("stochasticity", None) if name not in GAMES else None
    env, params = _REGISTRY[name][0](**options)
    env, params = apply_stochasticity(env, params, generic)  # the generic profiles (`kernels/wrappers.py`)
    return (AutoReset(env) if auto_reset else env), params


def stochasticity_kinds(name: str) -> tuple[str, ...]:
    """The stochasticity kinds kernel `name` takes: the Atari games the whole taxonomy, every other kernel the
    generic kinds `agentlab.kernels.wrappers.Stochastic` applies to it (`supported_kinds`)."""
    from agentlab.kernels.stochasticity import IMAGE_MASK_KINDS
    from agentlab.kernels.wrappers import supported_kinds

    name = canonical_id(name)
    if name in GAMES:
        return ("action", "sticky", "event", "drift", *(f"mask:kind={kind}" for kind in IMAGE_MASK_KINDS))
    env, params = make(name, auto_reset=False)
    return supported_kinds(env, params)


def describe(name: str) -> dict[str, Any]:
    """What `agentlab envs` shows for one kernel (channels, actions, event modes, mask regions, the stochasticity
    kinds it takes, its make() options)."""
    name = canonical_id(name)
    if split_external_id(name) is not None:  # gymnax:ID, jaxmarl:ID (`kernels/external.py`)
        from agentlab.kernels.external import describe_external

        return {**describe_external(name), "stochasticity": list(stochasticity_kinds(name))}
    if name not in _REGISTRY:
        raise UsageError(f"unknown kernel {name!r}: valid kernels are {choices(registered_kernels())}")
    env, _ = make(name, auto_reset=False)
    kinds = list(stochasticity_kinds(name))
    return {**_REGISTRY[name][1](env), "stochasticity": kinds, "options": option_defaults(name)}
