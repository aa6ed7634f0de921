# The README's commands. `make run`: the gateway on embedded defaults. `make test`: the whole suite
# against a real PostgreSQL and Redis that the test session starts itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench soak mutants grpc-stubs system-deps clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

.env:
	@echo "writing .env with a generated SESSION_SECRET"
	@printf 'SESSION_SECRET=%s\n' "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')" > .env

# Development upstreams listen on loopback, which the destination policy refuses by default.
LOOPBACK_UPSTREAMS := MCP_UPSTREAM_ALLOWED_CIDRS=127.0.0.0/8,::1/128

run: $(VENV)/.runtime .env
	@grep -q '^MCP_UPSTREAM_' .env || { echo "adding $(LOOPBACK_UPSTREAMS) to .env (upstream MCP servers on loopback)"; echo '$(LOOPBACK_UPSTREAMS)' >> .env; }
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py mcp_apikey create --name dev-admin --scopes admin:mcp --if-missing
	$(VENV)/bin/honcho -f Procfile start

system-deps:
	./scripts/ensure-system-deps.sh

test: $(VENV)/.dev system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# `make bench BENCH_ARGS="--compare-ref 7ea0146"` also measures the threaded stage 1 (README).
BENCH_ARGS ?=
bench: $(VENV)/.dev
	./scripts/ensure-system-deps.sh --bench
	$(PY) -m bench.run $(BENCH_ARGS)

# Ten minutes of mixed traffic with faults injected (README: "Soak"); `make soak SOAK_MINUTES=1`.
SOAK_MINUTES ?= 10
soak: $(VENV)/.dev system-deps
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES)

# Mutation testing of the guarantee modules (scripts/mutants.py lists them with their tests).
mutants: $(VENV)/.dev system-deps
	$(PY) scripts/mutants.py

grpc-stubs: $(VENV)/.dev
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. mcp/grpc/gateway.proto

clean:
	rm -rf $(VENV) data staticfiles
