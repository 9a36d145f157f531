# gridwatch: `make demo` runs the full loop on embedded defaults; `make test` runs the test suite.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: demo test bench venv clean

venv:
	bash scripts/bootstrap.sh

demo: venv
	$(PY) -m api.cli demo $(if $(DURATION),--duration $(DURATION),)

test:
	bash scripts/test-deps.sh
	bash scripts/bootstrap.sh test
	$(PY) -m pytest $(PYTEST_ARGS)

bench:
	bash scripts/test-deps.sh
	bash scripts/bootstrap.sh test
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf .venv var test-artifacts
