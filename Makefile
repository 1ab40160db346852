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

SNNAS := $(VENV)/bin/snnas
# --resume when the step's checkpoint exists: a second `make quickstart` continues or
# re-reports the same run instead of refusing to overwrite it.
resume = $(if $(wildcard $(1)),--resume,)

quickstart: $(STAMP)
	$(SNNAS) space show search_spaces/quickstart.toml
	$(SNNAS) search search_spaces/quickstart.toml --name quickstart \
		$(call resume,runs/quickstart/last.pt)
	$(SNNAS) finetune quickstart $(call resume,runs/quickstart/finetune/last.pt)
	$(SNNAS) export quickstart --onnx
	$(SNNAS) plan verify runs/quickstart/plan
	$(SNNAS) run runs/quickstart/plan --local --name quickstart-runtime

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
