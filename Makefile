# ps-health: `make run` sets everything up and runs the monitor; `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PSH    := $(VENV)/bin/ps-health
PYTHON ?= python3
export PS_HEALTH_HOME ?= $(CURDIR)/.ps-health

.PHONY: help deps system-deps run db test test-sql test-py test-faults bench soak demo lint clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

system-deps: ## install PostgreSQL 15, pg_cron, pgTAP, pg_prove, tmux when missing (apt-get as root)
	@bash deploy/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

deps: system-deps $(VENV)/.installed ## create the virtualenv and install what is missing

db: deps ## start the embedded PostgreSQL, migrate, schedule the pg_cron jobs
	@$(PSH) db up >/dev/null
	@$(PSH) migrate
	@$(PSH) cron install
	@echo "database: $$($(PSH) db url)"
	@echo "use it:   export PS_HEALTH_DSN='$$($(PSH) db url)'"

run: db ## set up everything, show the status, run the reactor in the foreground
	@$(PSH) status
	$(PSH) reactor

test: deps ## pgTAP (pg_prove) then pytest in 4 workers, one throw-away cluster; fails if a process outlives it
	$(PY) -m tests.harness all

test-sql: deps ## only the pgTAP tests
	$(PY) -m tests.harness sql

test-py: deps ## only pytest (ARGS="-k name" selects; PS_HEALTH_TEST_WORKERS=0 runs one process)
	$(PY) -m tests.harness py $(ARGS)

test-faults: deps ## fault-injection tests (processes killed and restarted)
	$(PY) -m tests.harness py -m faults

bench: deps ## benchmarks that print figures
	$(PY) -m bench

soak: deps ## a simulated 8-hour day: 500 sessions, 5,000 spawns, figures and retention
	$(PY) -m bench day

demo: deps ## a demo PS pane in a private tmux server, prompted within minutes
	$(PSH) demo

lint: deps ## byte-compile everything and look for repeated code
	$(PY) -m compileall -q reactor tests bench

clean: ## stop the embedded cluster and remove the virtualenv
	-$(PSH) db down
	rm -rf $(VENV)
