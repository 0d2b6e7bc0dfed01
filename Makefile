PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-gpu demo bench lint clean

SHAPES := data/shapes/annotations/instances_val.json

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,fast,export,cluster]"
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q -n auto

# The GPU suite (tests/gpu): skipped where CUDA is absent; benchmarks/gpu.sh runs it first.
test-gpu: venv
	$(PY) -m pytest -q -rs tests/gpu

# The main job on the built-in synthetic data: generate it once, train on the CPU, evaluate.
demo: venv $(SHAPES)
	$(PY) -m detector train configs/demo/shapes_focal.yaml

# Side-by-side with torchvision (same weights, inputs and threads); the table also goes to
# output/bench.json. Under 10 minutes on 2 CPU cores.
bench: venv
	mkdir -p output
	$(PY) -m benchmarks.run --json output/bench.json

$(SHAPES): | venv
	$(PY) -m detector make-synthetic data/shapes

lint: venv
	$(PY) -m flake8 detector tests tools benchmarks
	$(PY) -m isort --check-only detector tests tools benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
