"""What an LLM agent is asked: its persona and observation, filled in for many agents at once.

A persona or a decide rule's observation is a template whose `{name}` placeholders name an
attribute, a `let` value of the rule, `{env.x}` or `{params.x}`; `simulator.prompt_templates`
checks them when a scenario compiles. Numbers are rounded to the rule's `bucket` (per name: `buckets`), so
agents alike write the same prompt and can be answered once (archetypes). An agent's last few
choices (`AgentMemory`) close its observation; `chat_messages` wraps the result in the
`agent_decide` prompt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import prompts
from simulator.compile import CompiledRule
from simulator.engine import Simulation
from simulator.prompt_templates import PLACEHOLDER

PROMPT = "agent_decide"

# --- numbers as text --------------------------------------------------------------------------

def _decimals(step: float) -> int:
    """Digits after the point that multiples of `step` need (0.25 -> 2, 0.1 -> 1, 5 -> 0), at most 6."""
    return len(f"{step:.6f}".rstrip("0").partition(".")[2])


def _number_texts(values: np.ndarray, step: float) -> np.ndarray:
    """Numbers as prompt text: rounded to multiples of `step` (0: 4 significant digits)."""
    x = np.asarray(values, dtype=np.float64)
    if step > 0:
        x = np.round(x / step) * step
    uniq, inverse = np.unique(x, return_inverse=True)  # format each distinct value once
    texts = np.array([_fmt(v, step) for v in uniq], dtype=object)
    return texts[inverse.reshape(-1)]


def _fmt(v: float, step: float) -> str:
    if not np.isfinite(v):
        return "unknown"
    text = f"{v:.{_decimals(step)}f}" if step > 0 else f"{v:.4g}"
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# --- filling templates ------------------------------------------------------------------------

class _Renderer:
    """Fills templates for many agents at once; each placeholder is formatted once per distinct value."""

    def __init__(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray,
                 local_values: dict[str, Any], positions: np.ndarray, rounding: bool) -> None:
        self.sim, self.rule, self.rows, self.pos = sim, rule, rows, positions
        self.local_values = local_values
        self.rounding = rounding
        self._texts: dict[str, np.ndarray] = {}

    def step_for(self, name: str) -> float:
        """The rounding for a placeholder; parameters are the same for everyone, so shown exactly by default."""
        if not self.rounding:
            return 0.0
        spec = self.rule.spec
        return float(spec.buckets.get(name, 0.0 if name.startswith("params.") else spec.bucket))

    def texts(self, name: str) -> np.ndarray:
        """One string per selected agent for this placeholder."""
        if name not in self._texts:
            self._texts[name] = self._compute(name)
        return self._texts[name]

    def _compute(self, name: str) -> np.ndarray:
        size = len(self.pos)
        scope, _, key = name.partition(".")
        if key and scope == "env":
            return np.full(size, _number_texts(np.array([self.sim.env[key]]), self.step_for(name))[0], dtype=object)
        if key and scope == "params":
            return np.full(size, _number_texts(np.array([self.sim.params[key]]), self.step_for(name))[0], dtype=object)
        if name in self.local_values:
            value = self.local_values[name]
            values = np.broadcast_to(np.asarray(value), (len(self.rows),))[self.pos] if np.ndim(value) else \
                np.full(size, float(value))
            return _number_texts(values, self.step_for(name))
        values = self.sim.attrs[name][self.rows[self.pos]]
        labels = self.sim.c.attributes.get(name)
        if labels:
            table = np.array([*labels, "none"], dtype=object)
            return table[np.where(values >= 0, values, len(labels))]
        return _number_texts(values, self.step_for(name))

    def fill(self, template: str) -> np.ndarray:
        """The template for every selected agent (an object array of strings)."""
        parts = PLACEHOLDER.split(template)  # literal, name, literal, name, ...
        out = np.full(len(self.pos), parts[0], dtype=object)
        for i in range(1, len(parts), 2):
            out = out + self.texts(parts[i]) + parts[i + 1]
        return out


def default_observation(sim: Simulation, rule: CompiledRule, type_index: int) -> str:
    """The observation when a rule gives none: own attributes, the rule's `let` values, the environment."""
    spec = sim.spec
    own = [a for a in spec.agent_types[type_index].attribute_specs() if a != rule.record]
    lines = []
    if own:
        lines.append("Your state: " + "; ".join(f"{a.replace('_', ' ')} {{{a}}}" for a in own) + ".")
    if rule.spec.let:
        lines.append("Around you: " + "; ".join(f"{n.replace('_', ' ')} {{{n}}}" for n in rule.spec.let) + ".")
    if spec.environment:
        lines.append("Everyone: " + "; ".join(f"{e.replace('_', ' ')} {{env.{e}}}" for e in spec.environment) + ".")
    return "\n".join(lines)


class AgentMemory:
    """Each agent's last choices of each decide rule with a `memory`, oldest first, for its next prompts."""

    def __init__(self) -> None:
        self._history: dict[int, np.ndarray] = {}

    def remember(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray, choice: np.ndarray) -> None:
        """Record the final action of each of ``rows`` (fallback ones included)."""
        memory = rule.spec.memory
        if memory and len(rows):
            hist = self._history.get(rule.index)
            if hist is None:
                hist = self._history[rule.index] = np.full((sim.n, memory), -1, dtype=np.int16)
            hist[rows, :-1] = hist[rows, 1:]
            hist[rows, -1] = choice

    def texts(self, rule: CompiledRule, agents: np.ndarray) -> np.ndarray:
        """One line per agent naming its remembered choices ("" without any)."""
        hist = self._history.get(rule.index)
        empty = np.full(len(agents), "", dtype=object)
        if hist is None or not rule.spec.memory:
            return empty
        names = np.array([*rule.actions], dtype=object)
        rows, inverse = np.unique(hist[agents], axis=0, return_inverse=True)
        texts = []
        for r in rows:
            done = [names[c] for c in r if c >= 0]
            texts.append(f"\nYour last choices, oldest first: {', '.join(done)}." if done else "")
        return np.array(texts, dtype=object)[inverse.reshape(-1)]


def llm_positions(sim: Simulation, rows: np.ndarray) -> np.ndarray:
    """Positions in `rows` of the agents whose type decides by LLM."""
    llm_type = np.array([t.decision == "llm" for t in sim.c.types])
    return np.flatnonzero(llm_type[sim.type_code[rows]])


def agent_texts(sim: Simulation, rule: CompiledRule, rows: np.ndarray, local_values: dict[str, Any],
                positions: np.ndarray, *, rounding: bool, memory: AgentMemory) -> tuple[np.ndarray, np.ndarray]:
    """Each selected agent's persona and observation (with its memory), numbers rounded when ``rounding``."""
    spec = rule.spec
    personas = np.empty(len(positions), dtype=object)
    observations = np.empty(len(positions), dtype=object)
    type_of = sim.type_code[rows[positions]]
    for t in np.unique(type_of):
        sel = np.flatnonzero(type_of == t)
        agent_type = sim.spec.agent_types[int(t)]
        renderer = _Renderer(sim, rule, rows, local_values, positions[sel], rounding)
        personas[sel] = renderer.fill(agent_type.persona or f"You are one of the {agent_type.name}s.")
        observations[sel] = renderer.fill(spec.observation or default_observation(sim, rule, int(t)))
    return personas, observations + memory.texts(rule, rows[positions])


def chat_messages(sim: Simulation, rule: CompiledRule, persona: str, observation: str) -> list[dict[str, str]]:
    """Chat messages: persona and rules (system, a prefix the server can cache) first, the observation last."""
    spec = rule.spec
    return prompts.messages(
        PROMPT, persona=persona, situation=spec.description or sim.spec.description,
        options="\n".join(f"- {a}: {spec.actions[a].description or a}" for a in rule.actions),
        names=", ".join(f'"{a}"' for a in rule.actions), observation=observation)
