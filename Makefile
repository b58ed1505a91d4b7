# The two commands of the README: `make study` (the full study) and `make test` (the tests).
# Each creates .venv and installs what it needs when missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: study test lab data notebooks bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mnist-pairs)"
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/python -m mnist_pairs fetch-data

study: $(STAMP)
	$(BIN)/python -m mnist_pairs study

test: $(STAMP)
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks

# Rebuild the notebooks from tools/build_notebooks.py and store the outputs of their default
# (quick) parameters, as committed: nbval compares against these.
notebooks: $(STAMP)
	$(BIN)/python tools/build_notebooks.py
	cd notebooks && for nb in 01_data 02_train 03_analysis; do \
		../$(BIN)/jupyter nbconvert --to notebook --execute --inplace $$nb.ipynb || exit 1; done

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_epoch.py --out reports/benchmarks/bench_epoch.json
	$(BIN)/python benchmarks/bench_infer.py --out reports/benchmarks/bench_infer.json
	$(BIN)/python benchmarks/bench_levers.py --compile --out reports/benchmarks/bench_levers.json

lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean-venv:
	rm -rf $(VENV)
