"""An experiment: one scenario, a few conditions (parameter values), several seeds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.spec import ScenarioSpec, check_params


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80)
    params: dict[str, float] = Field(default_factory=dict)


class Experiment(BaseModel):
    """What `simulate` runs: every condition under every seed."""

    model_config = ConfigDict(extra="forbid")

    scenario: ScenarioSpec
    conditions: list[Condition] = Field(default_factory=lambda: [Condition(name="baseline")], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    steps: int | None = Field(None, ge=1, le=1_000_000, description="Overrides the spec's stop.max_steps.")
    population: int | None = Field(None, ge=1, description="Overrides the spec's population.")

    @model_validator(mode="after")
    def _check(self) -> "Experiment":
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ValueError("condition names must be distinct")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        for c in self.conditions:
            check_params(c.params, self.scenario)
        return self

    @property
    def n_runs(self) -> int:
        return len(self.conditions) * len(self.seeds)

    def runs(self) -> list[tuple[Condition, int]]:
        return [(c, s) for c in self.conditions for s in self.seeds]
