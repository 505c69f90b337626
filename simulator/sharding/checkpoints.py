"""A shard's checkpoint: what either kind of shard saves after a step and restores after a failure."""

from __future__ import annotations

from typing import Any

from simulator.compile import BUILTIN_ATTRIBUTES
from simulator.engine import Simulation


def checkpoint_state(sim: Simulation, own: slice, index: int) -> dict[str, Any]:
    """A shard's checkpoint: its own rows of every mutable attribute and its decision counts;
    shard 0 adds the step, parameters and environment, which every shard shares."""
    state: dict[str, Any] = {
        "attrs": {x: a[own].copy() for x, a in sim.attrs.items() if x not in BUILTIN_ATTRIBUTES},
        "decisions": dict(sim.decisions),
    }
    if index == 0:
        state.update(step_no=sim.step_no, params=dict(sim.params), env=dict(sim.env),
                     env_overrides=dict(sim.env_overrides))
    return state


def restore_shared(sim: Simulation, states: tuple[dict[str, Any], ...], index: int) -> None:
    """The shared part of a restore (the caller puts the attributes back)."""
    shared = states[0]
    sim.step_no = shared["step_no"]
    sim.params = dict(shared["params"])
    sim.env = dict(shared["env"])
    sim.env_overrides = dict(shared["env_overrides"])
    sim.decisions = dict(states[index]["decisions"])
