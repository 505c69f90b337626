"""`research --agents-mode/--llm-budget` reach the simulation: the config, the node's setup, the CLI check."""

import subprocess
import sys

from researcher.nodes.run_simulation import agents_setup
from researcher.state import ResearchConfig


def test_research_defaults_to_auto_with_a_small_budget():
    config = ResearchConfig()
    assert (config.agents_mode, config.llm_budget) == ("auto", 500)


def test_the_agents_use_the_agents_backend_and_the_configured_mode_and_budget():
    config = ResearchConfig(llm="http://a:1/v1", agents_llm="http://b:2/v1", agents_mode="llm", llm_budget=7,
                            llm_concurrency=3, model_path="/m.gguf")
    setup = agents_setup(config)
    assert (setup.mode, setup.budget, setup.llm, setup.concurrency, setup.model_path) == (
        "llm", 7, "http://b:2/v1", 3, "/m.gguf")
    assert agents_setup(ResearchConfig(llm="http://a:1/v1")).llm == "http://a:1/v1"


def test_an_unknown_agents_mode_is_a_one_line_error():
    p = subprocess.run([sys.executable, "-m", "societas.cli", "research", "Why?", "--agents-mode", "oracle"],
                       capture_output=True, text=True, timeout=120,
                       check=False)
    assert p.returncode != 0 and "unknown --agents-mode 'oracle'" in p.stderr and "Traceback" not in p.stderr
