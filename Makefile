# The two commands of the README: `make study` (the full study) and `make test` (the tests).
# Each creates .venv and installs what it needs when missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: study test lab data clean-venv

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

lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser notebooks

clean-venv:
	rm -rf $(VENV)
