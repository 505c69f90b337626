"""Errors in a scenario spec or expression: user errors that say where the problem is."""

from __future__ import annotations

from societas.errors import SocietasError


class SpecError(SocietasError):
    """A scenario spec or one of its expressions is invalid.

    `where` names the place in the spec (e.g. ``rule 'spread' (transition), field 'probability'``),
    `position` the 1-based column in the expression when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        scenario: str | None = None,
        where: str | None = None,
        expression: str | None = None,
        position: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.raw_message = message
        self.scenario = scenario
        self.where = where
        self.expression = expression
        self.position = position
        parts = []
        if scenario:
            parts.append(f"scenario {scenario!r}")
        if where:
            parts.append(where)
        if position is not None:
            parts.append(f"column {position}")
        prefix = ": ".join([", ".join(parts)]) if parts else ""
        text = f"{prefix}: {message}" if prefix else message
        if expression is not None and len(expression) <= 120:
            text += f" in `{expression}`"
        super().__init__(text, hint=hint)

    def located(self, *, scenario: str | None = None, where: str | None = None) -> "SpecError":
        """The same error with the scenario and the place in the spec filled in."""
        return SpecError(
            self.raw_message,
            scenario=scenario or self.scenario,
            where=where or self.where,
            expression=self.expression,
            position=self.position,
            hint=self.hint,
        )
