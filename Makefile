# Two commands on a fresh machine:  make demo  (install + offline quickstart)  and  make test  (install + suite).
VENV   ?= .venv
PYTHON ?= python3
TORCH  ?= torch==2.13.0
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip

.PHONY: install demo test test-fast bench system-deps wordnet clean

install: $(VENV)/.installed

# torch first, pinned: an unpinned torch (or accelerate) pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	touch $@

demo: install wordnet
	$(VENV)/bin/medgr2 run --resume

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

bench: install
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# Debian packages: WordNet for R_φ's grade-2 (synonym) perturbation, Chromium for the report screenshot test.
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index chromium >/dev/null

# The quickstart needs WordNet only: install Debian's copy unless NLTK's or Debian's is already there.
wordnet:
	@test -f /usr/share/wordnet/data.noun || $(PY) -c "import nltk; nltk.data.find('corpora/wordnet')" 2>/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index)

clean:
	rm -rf $(VENV) build *.egg-info runs
