# Two entry points do all the set-up on a fresh machine:
#   make quickstart   search, fine-tune, export and run a plan on the bundled digits data
#   make parity       the same with one parity device: search, fine-tune, train and measure it
#   make test         lint, type checks and the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install quickstart parity test lint typecheck pytest bench clean

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

# docs/parity.md: the quickstart with r = 1 (G = 4) through the real commands; `snnas cost`
# shows the parity lines of the policy trained, `snnas parity eval` A_available, A_degraded
# and the baselines (runs/quickstart_parity/parity/eval.json, by_device.png, overall.png).
parity: $(STAMP)
	$(SNNAS) search search_spaces/quickstart_parity.toml --name quickstart_parity \
		$(call resume,runs/quickstart_parity/last.pt)
	$(SNNAS) finetune quickstart_parity $(call resume,runs/quickstart_parity/finetune/last.pt)
	$(SNNAS) parity train runs/quickstart_parity \
		$(call resume,runs/quickstart_parity/parity/last.pt)
	$(SNNAS) cost search_spaces/quickstart_parity.toml \
		--policy runs/quickstart_parity/parity/config.json
	$(SNNAS) parity eval runs/quickstart_parity

lint: $(STAMP)
	$(VENV)/bin/ruff check snnas tests benchmarks examples
	$(VENV)/bin/ruff format --check snnas tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
