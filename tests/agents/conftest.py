"""Fixtures for the agent CLI suite: the installed CLIs, the model stand-in, and CLIs in tmux panes.

The suite runs only when PS_HEALTH_AGENTS=1 (`make test-agents` sets it), so `make test` never
collects it: it needs npm once and starts real agent CLIs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reactor.tmux import Tmux
from tests.agents import clis
from tests.agents.standin import StandIn
from tests.tmux_server import TmuxServer

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
def launch(installed, standin, tmp_path):
    """launch(name, settings=None) starts that CLI in a private tmux server; all end with the test."""
    server = TmuxServer(tmp_path)
    started: list[clis.Agent] = []

    def start(name: str, settings: dict | None = None) -> clis.Agent:
        agent = clis.launch(name, server, standin.url, tmp_path, settings=settings)
        started.append(agent)
        agent.wait_ready()
        return agent

    yield start
    for agent in started:
        agent.stop()
    server.remove()


@pytest.fixture
def typist(launch):
    """The reactor's own tmux client (control mode) for the private server the CLIs run in."""
    clients: list[Tmux] = []

    def make(agent: clis.Agent) -> Tmux:
        client = Tmux(socket_name=agent.server.name)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
