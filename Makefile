# consentry: the two commands are `make demo` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DB ?= var/demo.db
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: demo test install lint check-postgres check-chromium bench serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make demo: seed a realistic demo shop into the embedded store and serve it
demo: install
	$(BIN)/consentry demo --database-url sqlite:///$(DEMO_DB)

## make test: lint, types, then the whole suite on SQLite and a throwaway PostgreSQL, in
## TEST_WORKERS processes (each with its own stores)
test: install check-postgres check-chromium lint
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src

check-postgres:
	@scripts/ensure-system-packages.sh postgres

check-chromium:
	@scripts/ensure-system-packages.sh chromium

## make bench: the scale runs (not part of make test)
bench: install check-postgres
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/consent.py --preference-center
	$(BIN)/python bench/privacy.py
	$(BIN)/python bench/privacy.py --profiles 1000000 --events 10000000 --repeat 2 --in-place \
		--trained-versions 1 --no-ingest --out bench/results/privacy_1m.json
	$(BIN)/python bench/analytics.py  # runs bench/cdnow.py too
	$(BIN)/python bench/identity.py
	$(BIN)/python bench/recommend.py
	$(BIN)/python bench/recommend_serving.py
	$(BIN)/python bench/activation.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
