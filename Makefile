# ps-health: `make run` sets everything up and runs the monitor; `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PSH    := $(VENV)/bin/ps-health
PYTHON ?= python3
STEP   := bash deploy/step.sh
export PS_HEALTH_HOME ?= $(CURDIR)/.ps-health

.PHONY: help deps system-deps run db test test-sql test-py test-faults test-agents bench soak demo lint clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

system-deps: ## install PostgreSQL 15, pg_cron, pgTAP, pg_prove, tmux when missing (apt-get as root)
	@$(STEP) "system packages: PostgreSQL 15, pg_cron, pgTAP, pg_prove, tmux" bash deploy/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	@$(STEP) "Python: $(VENV) with ps-health and its test tools (pip; about a minute the first time)" \
	  bash deploy/install-python-deps.sh $(VENV) $(PYTHON)
	@touch $@

deps: system-deps $(VENV)/.installed ## create the virtualenv and install what is missing

db: deps ## start the embedded PostgreSQL, migrate, schedule the pg_cron jobs
	@$(STEP) "database: the embedded PostgreSQL in $(PS_HEALTH_HOME) (created the first time)" $(PSH) db up
	@$(STEP) "schema: build it, or bring it up to date" $(PSH) migrate
	@$(STEP) "pg_cron jobs: the sweep every minute, the retention prune daily" $(PSH) cron install
	@echo "use it:   export PS_HEALTH_DSN='$$($(PSH) db url)'"

run: db ## set up everything, saying what each step did, check it (ps-health doctor), run the reactor
	@echo "==> self-check (ps-health doctor)"
	@$(PSH) doctor --before-reactor || echo "    the failed checks above need a look; the reactor starts anyway"
	@echo "==> the reactor, in the foreground (Ctrl-C stops it; the database keeps running)"
	$(PSH) reactor

test: deps ## pgTAP (pg_prove) then pytest in 4 workers, one throw-away cluster; fails if a process outlives it
	$(PY) -m tests.harness all

test-sql: deps ## only the pgTAP tests
	$(PY) -m tests.harness sql

test-py: deps ## only pytest (ARGS="-k name" selects; PS_HEALTH_TEST_WORKERS=0 runs one process)
	$(PY) -m tests.harness py $(ARGS)

test-faults: deps ## fault-injection tests (processes killed and restarted)
	$(PY) -m tests.harness py -m faults

test-agents: deps ## the real Claude Code, Codex CLI and Gemini CLI (npm) against a local model stand-in, through the harness
	$(PY) -m tests.agents.clis install
	PS_HEALTH_AGENTS=1 PS_HEALTH_TEST_WORKERS=$${PS_HEALTH_TEST_WORKERS:-2} $(PY) -m tests.harness py tests/agents $(ARGS)

bench: deps ## benchmarks that print figures
	$(PY) -m bench

soak: deps ## a simulated 8-hour day: 500 sessions, 5,000 spawns, figures and retention
	$(PY) -m bench day

demo: deps ## a demo PS pane in a private tmux server (or PS_HEALTH_TMUX_SOCKET's), prompted within minutes
	$(PSH) demo

lint: deps ## ruff over the whole tree (its rules: [tool.ruff] in pyproject.toml)
	$(VENV)/bin/ruff check .

clean: ## stop the embedded cluster and remove the virtualenv
	-$(PSH) db down
	rm -rf $(VENV)
