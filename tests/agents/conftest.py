"""Fixtures for the agent CLI suite: the installed CLIs, the model stand-in, CLIs in tmux panes beside a
real reactor and a real PostgreSQL (the fixtures of tests/conftest.py and tests/reactor_proc.py).

The suite runs only when PS_HEALTH_AGENTS=1 (`make test-agents` sets it, and runs it through the test
harness), so `make test` never collects it: it needs npm once and starts real agent CLIs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.agents import clis
from tests.agents.standin import StandIn
from tests.reactor_proc import HOST
from tests.support import run_cli

ENABLED = os.environ.get("PS_HEALTH_AGENTS") == "1"


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if not ENABLED and collection_path.name.startswith("test_"):
        return True
    return None


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "agents: runs the real agent CLIs (make test-agents)")


def pytest_collection_modifyitems(config, items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.agents)


@pytest.fixture(scope="session")
def installed() -> Path:
    """The npm folder with the three CLIs, installed on first use."""
    return clis.install()


@pytest.fixture
def standin():
    """A fresh model stand-in on 127.0.0.1 for one test."""
    with StandIn() as server:
        yield server


@pytest.fixture
def launch(installed, standin, tmux_server, reactors, tmp_path):
    """launch(name, settings=None, setup=False, answer=None) starts that CLI in the reactors' tmux server.

    setup: run `ps-health setup <cli>` in its HOME first, as its user would (the hooks write to the
    reactors' spool). answer(agent): what the person does before the input box shows (e.g. trust hooks).
    Every CLI started and everything it started ends with the test.
    """
    started: list[clis.Agent] = []

    def start(name: str, settings: dict | None = None, setup: bool = False, answer=None) -> clis.Agent:
        def prepare(home: Path) -> None:
            if setup:
                res = run_cli(None, "setup", clis.SETUP[name], env={"HOME": str(home)})
                assert res.returncode == 0, res.stderr

        agent = clis.launch(name, tmux_server, standin.url, tmp_path, settings=settings, prepare=prepare,
                            env={"PS_HEALTH_SPOOL": str(reactors.spool), "PS_HEALTH_HOST": HOST})
        started.append(agent)
        if answer is not None:
            answer(agent)
        agent.wait_ready()
        return agent

    yield start
    for agent in started:
        agent.stop()
