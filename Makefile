# AntiNex: set up, run the demo, run the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
ANTINEX := $(VENV)/bin/antinex
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup system-deps broker broker-stop demo test test-unit lint bench clean default-model

# Debian packages the sensor's tests, the lab and the dashboards test use (run as root).
system-deps:
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		openjdk-17-jre-headless maven tshark tcpreplay tcpdump prometheus iproute2 kcat \
		libpcap0.8 nmap hping3 hydra sqlmap slowhttptest masscan dnsmasq siege curl dnsutils \
		iputils-ping openssh-server openssl >/dev/null

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

broker: setup
	$(ANTINEX) kafka start

broker-stop:
	$(ANTINEX) kafka stop

demo: broker
	$(ANTINEX) demo $(DEMO_ARGS)

test: broker
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m "not kafka and not netns and not prometheus" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy antinex capture stream_processor models lab

bench: broker
	$(PY) bench/bench_sensor.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# The shipped default model, rebuilt from nothing: lab runs (as root, about 20 minutes), datasets,
# audit, training, evaluation on held-out runs, leave-one-attack-type-out and the demo capture
# check (about 40 minutes more on two cores). Every step's output goes to DEFAULT_MODEL_OUT;
# DEFAULT_MODEL_FLAGS=--ship installs the new version in models/default and the demo capture in
# lab/captures; --runs DIR reuses recorded lab runs instead of recording new ones.
DEFAULT_MODEL_OUT ?= $(HOME)/.cache/antinex/default-model
DEFAULT_MODEL_FLAGS ?=
.PHONY: default-model
default-model: setup
	$(PY) models/default/rebuild.py $(DEFAULT_MODEL_OUT) $(DEFAULT_MODEL_FLAGS)
