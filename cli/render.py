"""`agentlab render`: one episode as a GIF or a PNG strip, to see what a mask or an event does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from agentlab.cli.common import Seed, Stochasticity, fail, handle_errors, parse_int_list, print_json
from agentlab.limits import Bound
from agentlab.rundir import MAX_NAME_BYTES, atomic_write

POLICIES = ("random", "noop")  # the Atari-style games'; the control kernels' are `kernels.control.policies.POLICIES`
CONTROL = ("maze2d", "pendulum")  # continuous kernels drawn as pictures (`kernels.control`), sorted
#: What one render may ask for. A frame is ``10 x scale`` pixels square plus a caption; ten thousand
#: steps is 100 times a default clip, and the frames of the largest render are checked against memory.
STEPS = Bound("--steps", int, low=1, high=10_000, unit="steps of one episode")
SCALE = Bound("--scale", int, low=1, high=64, unit="pixels per grid cell")
FPS = Bound("--fps", float, low=0.01, high=100, unit="GIF frames per second")
MAX_ACTIONS = 10_000  # --actions entries (the script is cycled; longer than --steps is never used)
CAPTION_PIXELS = 14  # rows of a frame's caption (viewer._captioned)


@handle_errors
def render(
    env_name: Annotated[
        str, typer.Argument(metavar="ENV", help="An Atari-style kernel, pendulum or maze2d (see `agentlab envs`).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output file: .gif (animation) or .png (strip of frames).")
    ] = Path("clip.gif"),
    stochasticity: Stochasticity = "plain",
    steps: Annotated[int, typer.Option("--steps", help="At most this many steps (the episode may end sooner).")] = 100,
    policy: Annotated[
        str, typer.Option("--policy", help="random (uniform actions) or noop; on maze2d also planner.")
    ] = "random",
    actions: Annotated[
        str | None,
        typer.Option(
            "--actions", help="Given actions instead of a policy: indices into the action set, e.g. 1,1,2 (cycled)."
        ),
    ] = None,
    seed: Seed = 0,
    scale: Annotated[
        int, typer.Option("--scale", help="Pixels per grid cell (pendulum: the frame is 10 x scale pixels square).")
    ] = 16,
    fps: Annotated[float, typer.Option("--fps", help="GIF frames per second.")] = 10.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --out file.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print a summary of the episode on stdout.")] = False,
) -> None:
    """Render one episode (what the agent sees; cells a mask hid are grey) as a GIF or a PNG strip."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from agentlab import limits
    from agentlab.kernels import make
    from agentlab.kernels.atari import GAMES, viewer
    from agentlab.kernels.names import canonical_id

    env_name = canonical_id(env_name)
    if env_name not in GAMES and env_name not in CONTROL:
        valid = ", ".join(sorted((*GAMES, *CONTROL)))
        fail(f"render draws the Atari-style and control kernels: valid ENV values are {valid}")
    check_out_file(out, force)
    steps, scale, fps = STEPS.check(steps), SCALE.check(scale), FPS.check(fps)
    if env_name in CONTROL:
        if stochasticity != "plain":
            fail(f"--stochasticity: render draws {env_name} without stochasticity profiles; leave it 'plain'")
        if actions is not None:
            fail(f"--actions: {env_name} takes continuous actions; choose a --policy instead")
        summary = render_control(env_name, out, steps, policy, seed, scale, fps)
        if json:
            print_json(summary)
        else:
            typer.echo(f"wrote {out}: {summary['steps']} steps, reward {summary['total_reward']:g}", err=True)
        return
    if policy not in POLICIES:
        fail(f"unknown --policy {policy!r}: valid policies are 'random' or 'noop'")
    env, params = make(env_name, stochasticity=stochasticity, auto_reset=False)
    given = None
    if actions is not None:
        given = parse_int_list(actions, "--actions", minimum=0)
        if len(given) > MAX_ACTIONS:
            fail(f"--actions lists {len(given):,} actions; at most {MAX_ACTIONS:,} (they are cycled)")
        if max(given) >= env.num_actions:
            fail(
                f"--actions: {env_name} has {env.num_actions} actions ({', '.join(env.action_names)}), "
                f"indices 0..{env.num_actions - 1}"
            )
    # The frames (RGB, then captioned images; a PNG strip also the sheet) are what grows with --steps x --scale.
    side = 10 * scale
    frame_bytes = side * (side + CAPTION_PIXELS) * 3
    limits.check_memory(
        (steps + 1) * frame_bytes * 4, f"rendering {steps:,} steps at --scale {scale}", "lower --steps or --scale"
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
    try:
        if out.suffix.lower() == ".gif":
            atomic_write(out, lambda tmp: viewer.save_gif(tmp, frames, captions, fps=fps))
        else:
            atomic_write(out, lambda tmp: viewer.save_strip(tmp, frames, captions))
    except OSError as error:  # the folder went away or filled up after the checks
        fail(f"--out {out}: cannot write it: {error.strerror or error}")
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


def render_control(env_name: str, out: Path, steps: int, policy: str, seed: int, scale: int, fps: float) -> dict:
    """One episode of a control kernel under a scripted policy (`kernels.control.policies`), drawn by the kernel's
    NumPy `render` and written to `out`; returns the summary `render` prints."""
    import jax
    import numpy as np

    from agentlab import limits
    from agentlab.kernels import make
    from agentlab.kernels.control import maze2d, pendulum, policies, viewer

    env, params = make(env_name, auto_reset=False)
    act = policies.scripted_policy(policy, env, params)  # UsageError names the valid policies
    if env_name == "maze2d":
        rows, cols = env.shape
        height, width = rows * scale, cols * scale
        draw = lambda obs: maze2d.render(obs, params, env, scale=scale)
    else:
        height = width = 10 * scale
        draw = lambda obs: pendulum.render(obs, params, env, size=10 * scale)
    frame_bytes = width * (height + CAPTION_PIXELS) * 3
    limits.check_memory(
        (steps + 1) * frame_bytes * 4, f"rendering {steps:,} steps at --scale {scale}", "lower --steps or --scale"
    )
    episode = jax.jit(lambda key: policies.run_episode(env, params, key, steps, act))(jax.random.key(seed))
    episode = {k: np.asarray(v) for k, v in episode.items()}
    done = episode["done"]
    length = int(np.argmax(done)) + 1 if done.any() else steps
    reward = episode["reward"][:length]
    score = np.concatenate([[0.0], np.cumsum(reward)])
    frames = np.stack([draw(obs) for obs in episode["obs"][: length + 1]])
    captions = ["t=0 reset"] + [
        f"t={t + 1} a=({', '.join(f'{a:+.2f}' for a in episode['action'][t])}) r={reward[t]:.3g} R={score[t + 1]:.4g}"
        for t in range(length)
    ]
    try:
        if out.suffix.lower() == ".gif":
            atomic_write(out, lambda tmp: viewer.save_gif(tmp, frames, captions, fps=fps))
        else:
            atomic_write(out, lambda tmp: viewer.save_strip(tmp, frames, captions))
    except OSError as error:  # the folder went away or filled up after the checks
        fail(f"--out {out}: cannot write it: {error.strerror or error}")
    return {
        "env": env_name,
        "policy": policy,
        "steps": length,
        "episode_ended": bool(done.any()),
        "total_reward": float(score[-1]),
        "out": str(out),
    }


def check_out_file(out: Path, force: bool) -> None:
    """``--out`` must be a new (or, with `force`, an existing) .gif or .png file in a folder that exists or
    can be made and written: checked before anything is computed, one line otherwise."""
    from agentlab.rundir import check_creatable, check_text

    check_text(out, "--out")
    try:
        if out.is_dir():
            fail(f"--out {out} is a directory: give a file name ending in .gif or .png")
    except OSError as error:
        fail(f"--out {out}: {error.strerror or error}")
    if out.suffix.lower() not in (".gif", ".png"):
        fail(f"--out {out}: the file must end in .gif or .png")
    name = os.fsencode(Path(os.path.abspath(out)).name)
    if len(name) > MAX_NAME_BYTES:
        fail(f"--out: the file name is {len(name)} bytes long; at most {MAX_NAME_BYTES}")
    try:
        if out.exists() or out.is_symlink():
            if not force:
                fail(f"--out {out} already exists: pass --force to overwrite it")
            if not out.is_file():
                fail(f"--out {out} exists and is not a regular file")
    except PermissionError:
        fail(f"--out {out}: permission denied")
    except OSError as error:
        fail(f"--out {out}: {error.strerror or error}")
    check_creatable(out)
