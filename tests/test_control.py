"""The control kernels: `pendulum` against gymnax's ``Pendulum-v1``, `maze2d` against a plain NumPy step and its
collision invariants, both kernels' `transition_from_observation` / `valid_observation`, and the maze2d planner."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentlab.errors import UsageError
from agentlab.kernels import make
from agentlab.kernels.control import maze2d, pendulum, policies
from agentlab.kernels.control.maze2d import EPISODE_STEPS, LAYOUTS, Maze2d, Maze2dState
from agentlab.kernels.control.pendulum import Pendulum, PendulumState

gymnax = pytest.importorskip("gymnax")
from gymnax.environments.classic_control.pendulum import EnvState as GymnaxState  # noqa: E402

# -- pendulum against gymnax ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gym_pendulum():
    env, params = gymnax.make("Pendulum-v1")
    return env, params


def _ours_and_gymnax_step(gym_pendulum):
    gym_env, gym_params = gym_pendulum
    env = Pendulum()
    params = env.default_params()
    key = jax.random.key(0)

    def both(theta, theta_dot, action):
        state = PendulumState(theta=theta, theta_dot=theta_dot, time=jnp.int32(0))
        obs, nxt, reward, terminated, truncated, _ = env.step(key, state, action, params)
        g_state = GymnaxState(theta=theta, theta_dot=theta_dot, last_u=jnp.float32(0), time=0)
        g_obs, g_nxt, g_reward, g_done, _ = gym_env.step_env(key, g_state, params.max_torque * action, gym_params)
        ours = (obs, nxt.theta, nxt.theta_dot, reward, terminated)
        theirs = (g_obs, g_nxt.theta, g_nxt.theta_dot, g_reward, g_done)
        return ours, theirs

    return jax.jit(jax.vmap(both))


def test_pendulum_steps_equal_gymnax_on_random_states_and_actions(gym_pendulum):
    rng = np.random.default_rng(0)
    n = 500
    theta = rng.uniform(-3 * np.pi, 3 * np.pi, n).astype(np.float32)  # gym's theta is not wrapped
    theta_dot = rng.uniform(-8, 8, n).astype(np.float32)
    action = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    ours, theirs = _ours_and_gymnax_step(gym_pendulum)(theta, theta_dot, action)
    for a, b, what in zip(ours, theirs, ("obs", "theta", "theta_dot", "reward", "done")):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-5, err_msg=what)


def test_pendulum_trajectory_equals_gymnax_from_the_same_reset_key(gym_pendulum):
    gym_env, gym_params = gym_pendulum
    env, params = make("pendulum", auto_reset=False)
    key = jax.random.key(7)
    obs, state = env.reset(key, params)
    g_obs, g_state = gym_env.reset_env(key, gym_params)
    np.testing.assert_allclose(np.asarray(obs), np.asarray(g_obs), atol=1e-6)
    actions = jax.random.uniform(jax.random.key(8), (200, 1), jnp.float32, -1, 1)
    step, g_step = jax.jit(env.step), jax.jit(gym_env.step_env)
    for t in range(200):
        obs, state, reward, terminated, truncated, _ = step(key, state, actions[t], params)
        g_obs, g_state, g_reward, _, _ = g_step(key, g_state, 2.0 * actions[t], gym_params)
        np.testing.assert_allclose(np.asarray(obs), np.asarray(g_obs), rtol=1e-5, atol=1e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(float(reward), float(g_reward), rtol=1e-5, atol=1e-4, err_msg=f"step {t}")
        assert not bool(terminated) and bool(truncated) == (t == 199)


def test_pendulum_clips_actions_and_its_reward_uses_the_state_before_the_step():
    env = Pendulum()
    params = env.default_params()
    state = PendulumState(theta=jnp.float32(0.5), theta_dot=jnp.float32(1.0), time=jnp.int32(0))
    key = jax.random.key(0)
    big = env.step(key, state, jnp.array([5.0]), params)
    one = env.step(key, state, jnp.array([1.0]), params)
    for a, b in zip(jax.tree.leaves(big[:3]), jax.tree.leaves(one[:3])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    expected = -(0.5**2 + 0.1 * 1.0**2 + 0.001 * 2.0**2)
    np.testing.assert_allclose(float(one[2]), expected, rtol=1e-6)


def test_pendulum_transition_from_observation_equals_step():
    env = Pendulum()
    params = env.default_params()
    rng = np.random.default_rng(1)
    theta = jnp.asarray(rng.uniform(-10, 10, 300), jnp.float32)
    theta_dot = jnp.asarray(rng.uniform(-8, 8, 300), jnp.float32)
    action = jnp.asarray(rng.uniform(-1.5, 1.5, (300, 1)), jnp.float32)

    def both(theta, theta_dot, action):
        state = PendulumState(theta=theta, theta_dot=theta_dot, time=jnp.int32(0))
        obs = env.observe(jax.random.key(0), state, params)
        next_obs, _, reward, *_ = env.step(jax.random.key(0), state, action, params)
        model_obs, model_reward = env.transition_from_observation(obs, action, params)
        return next_obs, reward, model_obs, model_reward, env.valid_observation(obs, params)

    next_obs, reward, model_obs, model_reward, valid = jax.jit(jax.vmap(both))(theta, theta_dot, action)
    np.testing.assert_allclose(np.asarray(model_obs), np.asarray(next_obs), atol=2e-5)
    np.testing.assert_allclose(np.asarray(model_reward), np.asarray(reward), rtol=1e-5, atol=1e-4)
    assert np.asarray(valid).all()


# -- maze2d: a plain NumPy step, written as a loop over the two axes -----------------------------------------------


def reference_step(walls: np.ndarray, goal, position, velocity, action, p) -> tuple[np.ndarray, np.ndarray, float]:
    """One maze2d step in float32 NumPy: ``(position, velocity, reward)``; a move crossing into a wall cell stops
    1e-4 before the edge and zeroes that velocity component."""
    f32 = np.float32
    a = np.clip(np.asarray(action, f32), f32(-1), f32(1))
    v = (np.asarray(velocity, f32) + f32(p.dt) * (f32(p.force_scale) * a)) / (f32(1) + f32(p.dt) * f32(p.damping))
    speed = np.sqrt(np.sum(v * v, dtype=f32))
    v = v * min(f32(1), f32(p.max_speed) / max(speed, f32(1e-12)))
    pos = np.asarray(position, f32).copy()
    v = v.astype(f32)
    for axis in (0, 1):  # x first, then y in the column x reached
        target = pos[axis] + f32(p.dt) * v[axis]
        here, there = int(np.floor(pos[axis])), int(np.floor(target))
        if there != here:
            row, col = (int(np.floor(pos[1])), there) if axis == 0 else (there, int(np.floor(pos[0])))
            if walls[row, col]:
                target = f32(there - 1e-4) if there > here else f32(here + 1e-4)
                v[axis] = 0
        pos[axis] = target
    distance = float(np.hypot(pos[0] - goal[0], pos[1] - goal[1]))
    reward = np.exp(-distance) if p.reward == "dense" else float(distance <= p.goal_radius)
    return pos, v, reward


def random_states(env: Maze2d, rng, n: int, speed: float = 2.0):
    """`n` positions uniform within random free cells (some right at a wall edge), velocities and actions."""
    cells = env.free_cells[rng.integers(0, len(env.free_cells), n)]
    offset = rng.uniform(0, 1, (n, 2))
    edge = rng.random((n, 2)) < 0.2
    offset = np.where(edge, rng.choice([1e-4, 1 - 1e-4], (n, 2)), offset)
    position = (cells[:, ::-1] + offset).astype(np.float32)
    velocity = rng.uniform(-speed, speed, (n, 2)).astype(np.float32)
    action = rng.uniform(-1.5, 1.5, (n, 2)).astype(np.float32)
    return position, velocity, action


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("reward", ["sparse", "dense"])
def test_maze2d_step_equals_the_numpy_reference(layout, reward):
    env, params = make("maze2d", layout=layout, reward=reward, auto_reset=False)
    rng = np.random.default_rng(len(layout))
    position, velocity, action = random_states(env, rng, 400)

    def one(position, velocity, action):
        state = Maze2dState(position=position, velocity=velocity, time=jnp.int32(0))
        obs, _, r, terminated, _, _ = env.step(jax.random.key(0), state, action, params)
        return obs, r, terminated

    obs, r, terminated = jax.jit(jax.vmap(one))(position, velocity, action)
    goal = np.asarray(env.goal())
    for i in range(len(position)):
        pos, vel, rew = reference_step(env.walls, goal, position[i], velocity[i], action[i], params)
        np.testing.assert_allclose(np.asarray(obs[i]), np.concatenate([pos, vel]), atol=1e-5, err_msg=str(i))
        np.testing.assert_allclose(float(r[i]), rew, atol=1e-5)
    assert not np.asarray(terminated).any()


@given(seed=st.integers(0, 2**31 - 1), layout=st.sampled_from(sorted(LAYOUTS)), speed=st.floats(0.1, 10.0))
def test_maze2d_never_enters_a_wall_and_collisions_create_no_energy(seed, layout, speed):
    env, params = make("maze2d", layout=layout, max_speed=speed, auto_reset=False)
    rng = np.random.default_rng(seed)
    position, velocity, _ = random_states(env, rng, 32, speed)
    actions = jnp.asarray(rng.uniform(-1, 1, (100, 32, 2)), jnp.float32)
    run = _maze_walk(layout)
    positions, speeds, free_speeds = (np.asarray(x) for x in run(position, velocity, actions, params))
    cells = np.floor(positions).astype(int)
    assert not env.walls[cells[..., 1], cells[..., 0]].any()
    assert (speeds <= free_speeds + 1e-6).all()  # a collision only removes a component
    assert (speeds <= params.max_speed * (1 + 1e-6)).all()


_WALKS = {}


def _maze_walk(layout):
    """A jitted walk of many steps from a batch of states: positions, speeds, and the speeds without walls."""
    if layout not in _WALKS:
        env = Maze2d(layout)

        def walk(position, velocity, actions, params):
            def body(state, action):
                free = (state.velocity + params.dt * params.force_scale * jnp.clip(action, -1, 1)) / (
                    1 + params.dt * params.damping
                )
                free_speed = jnp.minimum(jnp.linalg.norm(free, axis=-1), params.max_speed)
                state = jax.vmap(env.move, in_axes=(0, 0, None))(state, action, params)
                return state, (state.position, jnp.linalg.norm(state.velocity, axis=-1), free_speed)

            state = Maze2dState(position=position, velocity=velocity, time=jnp.zeros(len(position), jnp.int32))
            return jax.lax.scan(body, state, actions)[1]

        _WALKS[layout] = jax.jit(walk)
    return _WALKS[layout]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_maze2d_transition_from_observation_equals_step(layout):
    env, params = make("maze2d", layout=layout, reward="dense", auto_reset=False)
    position, velocity, action = random_states(env, np.random.default_rng(3), 300)

    def both(position, velocity, action):
        state = Maze2dState(position=position, velocity=velocity, time=jnp.int32(0))
        obs = env.observe(jax.random.key(0), state, params)
        next_obs, _, reward, *_ = env.step(jax.random.key(0), state, action, params)
        return next_obs, reward, *env.transition_from_observation(obs, action, params)

    next_obs, reward, model_obs, model_reward = jax.jit(jax.vmap(both))(position, velocity, action)
    np.testing.assert_array_equal(np.asarray(model_obs), np.asarray(next_obs))
    np.testing.assert_array_equal(np.asarray(model_reward), np.asarray(reward))


def test_maze2d_valid_observation_is_inside_the_maze_and_outside_the_walls():
    env, params = make("maze2d", layout="medium", auto_reset=False)
    valid = jax.jit(jax.vmap(lambda obs: env.valid_observation(obs, params)))
    rows, cols = env.shape
    r, c = np.meshgrid(np.arange(-1, rows + 1), np.arange(-1, cols + 1), indexing="ij")
    centres = np.stack([c.ravel() + 0.5, r.ravel() + 0.5, np.zeros(r.size), np.zeros(r.size)], -1)
    inside = (r.ravel() >= 0) & (r.ravel() < rows) & (c.ravel() >= 0) & (c.ravel() < cols)
    expected = inside & ~env.walls[np.clip(r.ravel(), 0, rows - 1), np.clip(c.ravel(), 0, cols - 1)]
    np.testing.assert_array_equal(np.asarray(valid(jnp.asarray(centres, jnp.float32))), expected)
    assert not bool(env.valid_observation(jnp.array([jnp.nan, 1.5, 0, 0]), params))


def test_maze2d_reset_is_a_free_cell_centre_with_small_noise_and_rest():
    env, params = make("maze2d", layout="large", auto_reset=False)
    obs, _ = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(jax.random.key(0), 2000), params)
    obs = np.asarray(obs)
    offset = obs[:, :2] - np.floor(obs[:, :2])
    assert (np.abs(offset - 0.5) <= 0.1 + 1e-6).all() and (obs[:, 2:] == 0).all()
    cells = {(int(y), int(x)) for x, y in np.floor(obs[:, :2])}
    assert cells == {tuple(cell) for cell in env.free_cells.tolist()}  # every free cell, the goal's too
    assert env.goal_cell in cells


@pytest.mark.parametrize("name", ["pendulum", "maze2d"])
def test_vmap_equals_a_loop_and_a_key_fixes_the_trajectory(name):
    env, params = make(name)
    policy = policies.scripted_policy("random", env, params)
    run = jax.jit(lambda key: policies.run_episode(env, params, key, 50, policy))
    keys = jax.random.split(jax.random.key(11), 3)
    batched = jax.jit(jax.vmap(lambda key: policies.run_episode(env, params, key, 50, policy)))(keys)
    for lane in range(3):
        alone = run(keys[lane])
        for key in alone:
            np.testing.assert_array_equal(np.asarray(batched[key])[lane], np.asarray(alone[key]))
    again = run(keys[0])
    np.testing.assert_array_equal(np.asarray(again["obs"]), np.asarray(batched["obs"])[0])


# -- the planner --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("noise_std", [0.0, policies.NOISE_STD])
def test_planner_reaches_the_goal_from_every_free_cell(layout, noise_std):
    env, params = make("maze2d", layout=layout, auto_reset=False)
    goal = env.goal()

    def run(cell, key):
        state = Maze2dState(position=cell[::-1] + 0.5, velocity=jnp.zeros(2), time=jnp.int32(0))

        def body(state, k):
            obs = env.observe(k, state, params)
            state = env.move(state, policies.planner_action(k, obs, params, env, noise_std), params)
            return state, jnp.linalg.norm(state.position - goal)

        return jax.lax.scan(body, state, jax.random.split(key, EPISODE_STEPS[layout]))[1]

    cells = jnp.asarray(env.free_cells, jnp.float32)
    distance = jax.jit(jax.vmap(run))(cells, jax.random.split(jax.random.key(5), len(cells)))
    reached = np.asarray(distance <= params.goal_radius).any(axis=1)
    assert reached.all(), f"{layout}: no goal from cells {env.free_cells[~reached].tolist()}"


def test_waypoints_follow_a_shortest_path():
    table = policies.waypoint_table("umaze")
    # umaze: #####/#GOO#/###O#/#OOO#/#####, the goal at (row 1, col 1)
    path = [(3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    for (r, c), (nr, nc) in zip(path, path[1:]):
        np.testing.assert_array_equal(table[r, c], [nc + 0.5, nr + 0.5])
    np.testing.assert_array_equal(table[1, 1], [1.5, 1.5])


def test_planner_action_is_pure_and_in_range():
    env, params = make("maze2d", layout="medium", auto_reset=False)
    obs = jax.random.uniform(jax.random.key(0), (64, 4), jnp.float32, 0, 8)
    keys = jax.random.split(jax.random.key(1), 64)
    act = jax.jit(jax.vmap(lambda k, o: policies.planner_action(k, o, params, env, 0.5)))
    a, b = act(keys, obs), act(keys, obs)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.shape == (64, 2) and float(jnp.abs(a).max()) <= 1.0


# -- options, rendering, the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"layout": "nope"}, "layout of maze2d must be 'umaze', 'medium' or 'large', got 'nope'"),
        ({"reward": "x"}, "reward of maze2d must be 'sparse' or 'dense'"),
        ({"damping": -1.0}, "damping of maze2d must be a finite number in"),
        ({"dt": 0.5}, "dt of maze2d must be"),
        ({"bogus": 1}, "unknown option 'bogus'"),
    ],
)
def test_bad_maze2d_options_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        make("maze2d", **options)


def test_bad_pendulum_options_and_layouts_are_refused():
    with pytest.raises(UsageError, match="max_torque of pendulum must be"):
        make("pendulum", max_torque=0.0)
    with pytest.raises(UsageError, match="layout must be"):
        Maze2d("nope")


def test_maze2d_defaults_follow_the_layout():
    for layout, steps in EPISODE_STEPS.items():
        _, params = make("maze2d", layout=layout)
        assert params.max_steps == steps
    _, params = make("maze2d", layout="large", max_steps=50)
    assert params.max_steps == 50


def test_renders_are_rgb_pictures():
    env, params = make("maze2d", layout="medium", auto_reset=False)
    image = maze2d.render(np.array([6.5, 6.5, 0, 0], np.float32), params, env, scale=8)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert (image[6 * 8 + 4, 6 * 8 + 4] == (210, 40, 40)).all()  # the point, on the goal
    env, params = make("pendulum", auto_reset=False)
    image = pendulum.render(np.array([1.0, 0.0, 0.0], np.float32), params, env, size=64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert (image[16, 32] != 245).any() and (image[48, 32] == 245).all()  # upright: the rod above the pivot only


def test_cli_renders_the_planner_in_maze2d(tmp_path):
    from agentlab.cli.app import app

    out = tmp_path / "maze.gif"
    args = ["render", "maze2d", "--policy", "planner", "--steps", "60", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
    result = CliRunner().invoke(app, ["render", "pendulum", "--policy", "planner", "--out", str(tmp_path / "p.gif")])
    assert result.exit_code == 2 and "valid policies are 'random' or 'noop'" in result.output
