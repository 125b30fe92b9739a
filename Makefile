# Set-up and checks. Every target creates .venv and installs the pinned dependencies first;
# a second run only re-installs when pyproject.toml or constraints.txt changed.
SHELL := /bin/bash  # typecheck reads PIPESTATUS
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.proteus-installed
# DALI wheel variant (cuda130 or cuda120); CPU pipelines work with either.
DALI_EXTRA ?= cuda130
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint typecheck format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e ".[$(DALI_EXTRA),dev,onnx]"
	@touch $@

demo: install
	$(BIN)/proteus demo

# Tests run on every core (pytest-xdist, JOBS workers); a file's tests stay on one worker,
# so its module fixtures (tiny caches, the S3 server) are built once. pytest exits 5 when it
# collected nothing: that is a broken suite, so it fails too.
JOBS ?= auto
PYTEST = $(BIN)/python -m pytest -n $(JOBS) --dist loadfile
define run_pytest
	@$(PYTEST) $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc
endef

test: install
	$(call run_pytest,)

# The edit-test loop: all but the tests marked slow (real CLI processes killed and resumed,
# the S3 server, SLURM scripts, the GPU-proof rehearsal). .ci/run runs everything.
test-fast: install
	$(call run_pytest,-m "not slow")

# The formatter is the style authority: no line opts out of it.
lint: install typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if grep -rn --include='*.py' 'fmt: skip' cli common extract train evaluate tests benchmarks; then \
		echo "lint: remove the '# fmt: skip' above; ruff format decides the layout" >&2; exit 1; fi

# mypy checks the package as it is imported (proteus.common lives in common/, …): a tree of
# links under build/typecheck mirrors the installed layout, and the paths it reports are
# mapped back to the repository's.
TC := build/typecheck/proteus
typecheck: install
	@rm -rf build/typecheck && mkdir -p $(TC)
	@for f in cli/*.py; do ln -s ../../../$$f $(TC)/; done
	@ln -s ../../../cli/commands $(TC)/commands
	@for d in common extract train evaluate; do ln -s ../../../$$d $(TC)/$$d; done
	@cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p proteus 2>&1 \
		| sed -E 's#^proteus/commands/#cli/commands/#; s#^proteus/(common|extract|train|evaluate)/#\1/#; s#^proteus/([a-z_]+\.py)#cli/\1#'; \
		exit $${PIPESTATUS[0]}

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
