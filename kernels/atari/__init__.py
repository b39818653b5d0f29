"""Atari-style kernels: the five MinAtar games with the STORI stochasticity taxonomy."""

from __future__ import annotations

from agentlab.kernels.atari.asterix import Asterix
from agentlab.kernels.atari.base import AtariEnv, AtariParams, AtariState, MinAtarGame, describe
from agentlab.kernels.atari.breakout import Breakout
from agentlab.kernels.atari.freeway import Freeway
from agentlab.kernels.atari.seaquest import Seaquest
from agentlab.kernels.atari.space_invaders import SpaceInvaders
from agentlab.kernels.stochasticity import as_spec, validate_spec

GAMES: dict[str, type[MinAtarGame]] = {
    "asterix": Asterix,
    "breakout": Breakout,
    "freeway": Freeway,
    "seaquest": Seaquest,
    "space-invaders": SpaceInvaders,
}


def make_atari(
    name: str,
    stochasticity=None,
    max_steps: int | None = None,
    full_action_set: bool = False,
    ramping: bool = True,
) -> tuple[AtariEnv, AtariParams]:
    """Build one Atari-style kernel and its params (see `agentlab.kernels.make`)."""
    game = GAMES[name]()
    env = AtariEnv(game, full_action_set=bool(full_action_set))
    spec = validate_spec(as_spec(stochasticity), game.event_modes, game.blackout_regions, where=name)
    game_params = game.default_params()
    if hasattr(game_params, "ramping"):
        game_params = game_params.replace(ramping=bool(ramping))
    return env, AtariParams(game=game_params, stochasticity=spec, max_steps=max_steps)


def with_stochasticity(env: AtariEnv, params: AtariParams, stochasticity) -> AtariParams:
    """`params` with another stochasticity specification (string or profiles), validated for `env`."""
    game = env.game
    spec = validate_spec(as_spec(stochasticity), game.event_modes, game.blackout_regions, where=env.name)
    return params.replace(stochasticity=spec)


__all__ = [
    "GAMES",
    "AtariEnv",
    "AtariParams",
    "AtariState",
    "MinAtarGame",
    "describe",
    "make_atari",
    "with_stochasticity",
]
