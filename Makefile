# factorysat: the two commands of the README, plus helpers. Every target sets up what is missing
# (./bootstrap.sh is idempotent) and escalates with sudo when not run as root.
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Through sudo, root writes no bytecode or pytest cache into the user's checkout (it would be
# root-owned); run folders and caches are handed to the user (topologies/ownership.py).
ASROOT := $(if $(SUDO),sudo env PYTHONDONTWRITEBYTECODE=1 PYTEST_ADDOPTS=-pno:cacheprovider,)
PY := .venv/bin/python

.PHONY: demo test unit lint bench clean setup

setup:
	@./bootstrap.sh

demo: setup
	$(ASROOT) $(PY) -m experiments run demo

test: setup
	$(PY) -m ruff check topologies controllers experiments tests vm
	$(ASROOT) env CI=$(CI) $(PY) -m pytest -q -ra tests

unit: setup
	$(PY) -m pytest -q tests/unit

bench: setup
	$(ASROOT) $(PY) -m experiments bench links
	$(ASROOT) $(PY) -m experiments bench engine
	$(ASROOT) $(PY) -m experiments bench scale
	$(PY) -m experiments bench analysis
	$(PY) -m experiments bench leo
	$(PY) -m experiments bench cell

clean:
	$(ASROOT) $(PY) -m experiments clean

# The VM image (README "The VM image"): Debian 12 with the project installed, login
# factorysat/factorysat; build/vm/factorysat-vm.qcow2. vm-test boots it under qemu (TCG) and runs
# the netem + kernel-OVS checks inside; vm-boot-test logs in on its console and runs `make demo`.
.PHONY: vm-image vm-test vm-boot-test

vm-image:
	$(SUDO) vm/build.sh --qcow2

vm-test:
	$(SUDO) vm/test.sh

vm-boot-test: vm-image
	$(SUDO) vm/boot_test.py
