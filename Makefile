# Set-up and entry points. `make run` and `make test` create .venv if missing and install the
# exact versions in requirements.lock (`make test` also requirements-test.lock's test-only
# readers); nothing else has to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
DEMO := demo

.PHONY: run test lint format venv clean-demo rulegraph tables refresh-tables

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	# the package itself, editable: edits in this checkout take effect without reinstalling
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The test-only readers (requirements-test.lock: DP3, EveryBeam), on top of the above; only
# `make test` installs them, `make run` does not need them.
TEST_STAMP := $(VENV)/.installed-test

$(TEST_STAMP): $(STAMP) requirements-test.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock \
		-r requirements-test.lock
	touch $@

# Simulate one small DSA-110 group, convert it, print where the MS is.
DEMO_CONFIG := --config input_dir=$(DEMO)/input output_dir=$(DEMO)/output log_dir=$(DEMO)/logs \
	report_dir=$(DEMO)/report metrics_dir=$(DEMO)/logs/metrics

run: $(STAMP)
	$(BIN)/snakemake simulate --cores $(CORES) $(DEMO_CONFIG)
	$(BIN)/snakemake --cores $(CORES) $(DEMO_CONFIG)
	@$(BIN)/python -m dsa110ms.observe.summary $(DEMO)/output
	@echo "Run report: $(DEMO)/report/groups.html, figures in $(DEMO)/report/plots/"

# The rule graph in the docs (needs graphviz's dot: apt-get install graphviz).
rulegraph: $(STAMP)
	$(BIN)/snakemake simulate --cores 1 --quiet $(DEMO_CONFIG)
	$(BIN)/snakemake --rulegraph $(DEMO_CONFIG) | dot -Tsvg > docs/rulegraph.svg
	$(BIN)/snakemake --rulegraph $(DEMO_CONFIG) | dot -Tpng > docs/rulegraph.png

# What the installed Earth-rotation and leap-second tables cover (dsa110ms/timetables.py).
tables: $(STAMP)
	@$(BIN)/python -c "from dsa110ms import timetables; print(timetables.describe())"
	@echo "casadata $$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("casadata"))')"

# Upgrade the time tables (astropy-iers-data, casadata) to the newest on the registry and pin
# them: only their lines of requirements.lock and envs/dsa110ms.yaml change, nothing else is
# upgraded. Run it when the workflow refuses data beyond the tables, or monthly.
TABLES := astropy-iers-data casadata
refresh-tables: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade --no-deps $(TABLES)
	for package in $(TABLES); do \
		version=$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('$$package'))"); \
		sed -i -E "s/^(\s*- )?$$package==.*/\1$$package==$$version/" requirements.lock envs/dsa110ms.yaml; \
	done
	touch $(STAMP)
	@$(MAKE) --no-print-directory tables

test: $(STAMP) $(TEST_STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check dsa110ms scripts tests bench
	$(BIN)/ruff format --check dsa110ms scripts tests bench
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

format: $(STAMP)
	$(BIN)/ruff format dsa110ms scripts tests bench
	$(BIN)/ruff check --fix dsa110ms scripts tests bench
	$(BIN)/snakefmt Snakefile rules

clean-demo:
	rm -rf $(DEMO)
