# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q torch==2.13.0
	$(VPY) -m pip install -q -e ".[qt,test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m pytest -q tests
	$(VPY) -m pytest -q -p tests.gpu_paths tests/test_propagation.py tests/test_two_sided.py \
		tests/test_feature_cache.py tests/test_tracking.py tests/test_sub_cell_labels.py \
		tests/evaluation/test_interactive.py tests/widgets/test_propagate.py \
		tests/widgets/test_propagate_workflow.py tests/widgets/test_track.py

demo: $(STAMP)
	$(VPY) -m corrflow_napari.demo --out out

clean:
	rm -rf $(VENV) out
