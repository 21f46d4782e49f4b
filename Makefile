# skiff: `make run` and `make test` each do all set-up on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := python3 python3-venv python3-dev gcc busybox-static libseccomp2 \
	iproute2 util-linux procps tmux runc crun containerd docker.io docker-registry \
	skopeo umoci nftables apache2-utils curl docker-compose
STATE := /run/skiff-make

.PHONY: install apt venv images run stop test check lint typecheck layers bench bench-pull bench-engine bench-network runc-bats clean

install: apt venv
	@# bytecode up front: the runtime's start-up cost is measured, and
	@# PYTHONDONTWRITEBYTECODE may be set in the environment
	@$(BIN)/python -m compileall -q src >/dev/null

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python tools/launchers.py
	touch $@

images: install
	$(BIN)/python tools/build_images.py --out build/images

run: install images
	@bash tools/run.sh start

stop:
	@bash tools/run.sh stop

test: install images
	$(BIN)/pytest -q tests

lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: install
	$(BIN)/mypy

layers: install
	$(BIN)/lint-imports

check: lint typecheck layers test

bench: install images
	$(BIN)/python bench/runtime.py

bench-pull: install
	$(BIN)/python bench/pull.py

bench-engine: install images
	$(BIN)/python bench/engine.py

bench-network: install images
	$(BIN)/python bench/network.py

runc-bats: install images
	bash tests/runc-bats/run.sh

clean:
	rm -rf build $(VENV)
