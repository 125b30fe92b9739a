# Set-up and checks. Every target creates .venv and installs the pinned dependencies first;
# a second run only re-installs when pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.proteus-installed
# DALI wheel variant (cuda130 or cuda120); CPU pipelines work with either.
DALI_EXTRA ?= cuda130
PYTEST_ARGS ?=

.PHONY: install demo test lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e ".[$(DALI_EXTRA),dev]"
	@touch $@

demo: install
	$(BIN)/proteus demo

# pytest exits 5 when it collected nothing: that is a broken suite, so it fails too.
test: install
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

# The formatter is the style authority: no line opts out of it.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if grep -rn --include='*.py' 'fmt: skip' cli common extract train evaluate tests benchmarks; then \
		echo "lint: remove the '# fmt: skip' above; ruff format decides the layout" >&2; exit 1; fi

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
