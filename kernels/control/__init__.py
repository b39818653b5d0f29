"""Continuous-control kernels: `pendulum` (classic swing-up, gymnax's ``Pendulum-v1``) and `maze2d` (a damped
point mass in D4RL's walled mazes, agentlab's own physics), with the maze2d waypoint planner (`policies`) and
NumPy pictures of both (`viewer`)."""
