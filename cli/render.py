"""`agentlab render`: one episode as a GIF or a PNG strip, to see what a mask or an event does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentlab.cli.common import Seed, Stochasticity, fail, handle_errors, parse_int_list, print_json

POLICIES = ("random", "noop")


@handle_errors
def render(
    env_name: Annotated[str, typer.Argument(metavar="ENV", help="An Atari-style kernel (see `agentlab envs`).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output file: .gif (animation) or .png (strip of frames).")
    ] = Path("clip.gif"),
    stochasticity: Stochasticity = "plain",
    steps: Annotated[int, typer.Option("--steps", help="At most this many steps (the episode may end sooner).")] = 100,
    policy: Annotated[str, typer.Option("--policy", help="random (uniform actions) or noop.")] = "random",
    actions: Annotated[
        str | None,
        typer.Option(
            "--actions", help="Given actions instead of a policy: indices into the action set, e.g. 1,1,2 (cycled)."
        ),
    ] = None,
    seed: Seed = 0,
    scale: Annotated[int, typer.Option("--scale", help="Pixels per grid cell.")] = 16,
    fps: Annotated[float, typer.Option("--fps", help="GIF frames per second.")] = 10.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --out file.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print a summary of the episode on stdout.")] = False,
) -> None:
    """Render one episode (what the agent sees; cells a mask hid are grey) as a GIF or a PNG strip."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from agentlab.kernels import make
    from agentlab.kernels.atari import GAMES, viewer

    if env_name not in GAMES:
        fail(f"render draws the Atari-style kernels: valid ENV values are {', '.join(sorted(GAMES))}")
    if out.suffix.lower() not in (".gif", ".png"):
        fail(f"--out {out}: the file must end in .gif or .png")
    if out.exists() and not force:
        fail(f"--out {out} already exists: pass --force to overwrite it")
    if steps < 1 or scale < 1 or fps <= 0:
        fail("--steps and --scale must be >= 1 and --fps > 0")
    if policy not in POLICIES:
        fail(f"unknown --policy {policy!r}: valid policies are 'random' or 'noop'")
    env, params = make(env_name, stochasticity=stochasticity, auto_reset=False)
    given = None
    if actions is not None:
        given = parse_int_list(actions, "--actions", minimum=0)
        if max(given) >= env.num_actions:
            fail(
                f"--actions: {env_name} has {env.num_actions} actions ({', '.join(env.action_names)}), "
                f"indices 0..{env.num_actions - 1}"
            )

    def episode(key):
        obs, state = env.reset(jax.random.fold_in(key, 0), params)
        script = jnp.asarray(given if given else [0], jnp.int32)

        def body(carry, inputs):
            obs, state, done = carry
            t, k = inputs
            k_act, k_step = jax.random.split(k)
            if given:
                action = script[t % len(given)]
            elif policy == "random":
                action = env.action_space().sample(k_act)
            else:
                action = jnp.int32(0)
            next_obs, next_state, reward, terminated, truncated, info = env.step(k_step, state, action, params)
            truth = env.game.render(next_state.game)
            out = (next_obs, truth, reward, info["executed_action"], done)
            return (next_obs, next_state, done | terminated | truncated), out

        keys = jax.random.split(jax.random.fold_in(key, 1), steps)
        _, out = jax.lax.scan(body, (obs, state, jnp.asarray(False)), (jnp.arange(steps), keys))
        return obs, env.game.render(state.game), out

    first, first_truth, (obs, truth, reward, executed, finished) = jax.jit(episode)(jax.random.key(seed))
    finished = np.asarray(finished)
    length = int(np.argmax(finished)) if finished.any() else steps
    obs = np.concatenate([np.asarray(first)[None], np.asarray(obs)[:length]])
    truth = np.concatenate([np.asarray(first_truth)[None], np.asarray(truth)[:length]])
    reward, executed = np.asarray(reward)[:length], np.asarray(executed)[:length]
    frames = viewer.to_rgb(obs, truth, scale=scale)
    score = np.concatenate([[0.0], np.cumsum(reward)])
    captions = ["t=0 reset"] + [
        f"t={t + 1} {env.action_names[executed[t]]} r={reward[t]:g} R={score[t + 1]:g}" for t in range(length)
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        viewer.save_gif(out, frames, captions, fps=fps)
    else:
        viewer.save_strip(out, frames, captions)
    summary = {
        "env": env_name,
        "stochasticity": stochasticity,
        "steps": length,
        "episode_ended": bool(finished.any()),
        "total_reward": float(score[-1]),
        "out": str(out),
    }
    if json:
        print_json(summary)
    else:
        typer.echo(f"wrote {out}: {length} steps, reward {score[-1]:g}", err=True)
