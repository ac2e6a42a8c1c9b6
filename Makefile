# The two commands: `make demo` and `make test`. Everything else is set-up they do themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck services clean fast

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools  # >= 77: pyproject.toml; setup.py build_ext in the tests
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Optional: the same package with its control hot path compiled by mypyc (setup.py), in its own
# virtualenv, for long offline analyses: `.venv-fast/bin/ems-agent analyze ...`. Needs a C compiler.
FAST := .venv-fast
FAST_SRC := setup.py $(wildcard agent/*.py agent/*/*.py simulators/*.py common/*.py)
$(FAST)/.installed: pyproject.toml $(FAST_SRC)
	test -d $(FAST) || $(PY) -m venv $(FAST)
	$(FAST)/bin/pip install -q --upgrade pip setuptools 'mypy>=1.10'
	$(FAST)/bin/pip install -q .  # the dependencies first: mypyc type-checks against them
	EMS_MYPYC=1 $(FAST)/bin/pip install -q --no-build-isolation --no-deps --force-reinstall .
	rm -rf build
	touch $@

fast: $(FAST)/.installed

demo: $(STAMP)
	$(BIN)/ems-agent demo --site agent/sites/demo.toml

# Debian packages the integration tests talk to (real servers, loopback only).
services:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto"; \
	command -v victoria-metrics >/dev/null 2>&1 || test -x /usr/bin/victoria-metrics || missing="$$missing victoria-metrics"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 && [ "$${EMS_NO_APT:-0}" != "1" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not installed (tests needing them will skip):$$missing"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check agent drivers simulators common tests bench
	$(BIN)/ruff format --check agent drivers simulators common
	$(BIN)/mypy

test: $(STAMP) services lint
	$(BIN)/pytest -q -p no:cacheprovider --durations=15

clean:
	rm -rf $(VENV) $(FAST) build .pytest_cache .mypy_cache .ruff_cache
