# One command sets up a fresh clone and runs something: `make sentiment` or `make test`.
# The virtual environment is created and installed on first use (and again when pyproject.toml
# or constraints.txt changes). pyproject.toml declares version ranges; constraints.txt pins the
# exact torch/torchvision builds that install from this project's machines' local wheel files.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_ID := $(shell date +%Y%m%d-%H%M%S)
# The integration tests save real models (GBs of temp files over three runs): keep only the failed
# tests' folders, not pytest's default of every test of the last three runs.
KEEP_FAILED := -o tmp_path_retention_policy=failed

.PHONY: setup sentiment spam image domain-adaptation test test-fast docs lint format clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install nlp_transfer with its dev tools

sentiment: $(STAMP)  ## the main job: fine-tune on Rotten Tomatoes sentences (ARGS="--flag value" adds flags)
	$(BIN)/accelerate launch recipes/sentiment.py --output_dir outputs/sentiment-$(RUN_ID) $(ARGS)

spam: $(STAMP)  ## spam detection on the SMS Spam Collection
	$(BIN)/accelerate launch recipes/spam.py --output_dir outputs/spam-$(RUN_ID) $(ARGS)

image: $(STAMP)  ## the vision recipe: Fashion-MNIST source -> target transfer with a ResNet-18
	$(BIN)/accelerate launch recipes/image_classification.py --output_dir outputs/image-$(RUN_ID) $(ARGS)

domain-adaptation: $(STAMP)  ## movie reviews -> unlabelled product reviews: source-only, DANN, CORAL, MMD, oracle
	$(BIN)/accelerate launch recipes/domain_adaptation.py --output_dir outputs/domain_adaptation-$(RUN_ID) $(ARGS)

test: $(STAMP)  ## every test: fast tier + slow integration tests (what CI runs), one worker per core (at most 4)
	$(BIN)/python -m pytest -m "slow or not slow" -n auto --maxprocesses 4 --dist loadscope --durations=15 $(KEEP_FAILED) $(ARGS)

test-fast: $(STAMP)  ## the fast, offline tier only (plain pytest)
	$(BIN)/python -m pytest $(KEEP_FAILED) $(ARGS)

docs: $(STAMP)  ## build the documentation site into site/ (strict: a broken link or reference fails)
	$(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .ruff_cache
