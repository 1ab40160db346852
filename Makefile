# Two entry points do all the set-up on a fresh machine:
#   make quickstart   search, fine-tune, export and run a plan on the bundled digits data
#   make test         lint, type checks and the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install quickstart test lint typecheck pytest bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/snnas space show search_spaces/quickstart.toml
	$(VENV)/bin/snnas search search_spaces/quickstart.toml --name quickstart \
		$$(test -e runs/quickstart/last.pt && echo --resume)
	$(VENV)/bin/snnas cost search_spaces/quickstart.toml \
		--policy runs/quickstart/best_policy.json --device rpi3b+

lint: $(STAMP)
	$(VENV)/bin/ruff check snnas tests benchmarks
	$(VENV)/bin/ruff format --check snnas tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
