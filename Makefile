# The two commands of the README: `make up` (the platform with the demo city) and `make test`.
.PHONY: up test bench lint

CIM := .venv/bin/cim

up:
	scripts/bootstrap.sh --with-viewer
	$(CIM) db start
	$(CIM) db upgrade
	$(CIM) demo load
	$(CIM) serve

test:
	scripts/bootstrap.sh --with-gdal --with-viewer --with-browser
	.venv/bin/python -m pytest $(PYTEST_ARGS)

bench:
	scripts/bootstrap.sh --with-gdal
	.venv/bin/python bench/ingest.py $(BENCH_ARGS)

lint:
	.venv/bin/ruff check .
