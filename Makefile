# skysort: every README command is a target here. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EPOCHS ?= 20

.PHONY: help serve test lint models bench bench-survey bench-active bench-gan batch-cost load-test container-smoke clean-runs

help:
	@echo "make serve   start the HTTP service with the bundled models (http://127.0.0.1:3000)"
	@echo "make test    run the test suite"
	@echo "make lint    ruff check + format check"
	@echo "make models  retrain the default bundles from data/ (bundles/)"
	@echo "make bench   print throughput figures (read+preprocess, predictor, classify)"
	@echo "make batch-cost       CPU per spectrum of each step of a batch request (no HTTP)"
	@echo "make load-test        load-test the HTTP service on loopback (prints a table)"
	@echo "make container-smoke  build the container image and send it real requests"
	@echo "make bench-active     H-alpha active learning with a scripted oracle (5,000 spectra)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/skysort serve --host $${HOST:-127.0.0.1} --port $${PORT:-3000}

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

models: $(STAMP)
	rm -rf runs/stellar runs/bundles/stellar
	$(BIN)/skysort train stellar --epochs $(EPOCHS) --workdir runs/stellar --out runs/bundles/stellar
	rm -rf bundles/stellar && mkdir -p bundles && mv runs/bundles/stellar bundles/stellar
	$(BIN)/skysort evaluate stellar --bundle bundles/stellar --report reports/stellar
	rm -rf runs/gan runs/bundles/gan
	$(BIN)/skysort train gan --workdir runs/gan --out runs/bundles/gan
	rm -rf bundles/gan && mv runs/bundles/gan bundles/gan
	$(BIN)/skysort evaluate gan --bundle bundles/gan --report reports/gan
	rm -rf runs/galaxy runs/bundles/galaxy
	$(BIN)/skysort train galaxy --workdir runs/galaxy --out runs/bundles/galaxy
	rm -rf bundles/galaxy && mv runs/bundles/galaxy bundles/galaxy
	$(BIN)/skysort evaluate galaxy --bundle bundles/galaxy --report reports/galaxy
	rm -rf runs/halpha runs/bundles/halpha
	$(BIN)/skysort train halpha --workdir runs/halpha --out runs/bundles/halpha
	rm -rf bundles/halpha && mv runs/bundles/halpha bundles/halpha
	$(BIN)/skysort evaluate halpha --bundle bundles/halpha --report reports/halpha

bench: $(STAMP)
	$(BIN)/python scripts/bench_stellar.py

bench-survey: $(STAMP)
	$(BIN)/python scripts/bench_survey.py

bench-active: $(STAMP)
	$(BIN)/python scripts/active_oracle.py

bench-gan: $(STAMP)
	$(BIN)/python scripts/bench_gan.py

batch-cost: $(STAMP)
	$(BIN)/python scripts/batch_cost.py

load-test: $(STAMP)
	$(BIN)/python scripts/load_test.py

container-smoke:
	scripts/container_smoke.sh

clean-runs:
	rm -rf runs reports
