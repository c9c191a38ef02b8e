# Two commands set everything up on a fresh Debian or Ubuntu machine:
#   make demo   the service with a demo sale, on its own Redis and Postgres
#   make test   the whole test suite, against real servers it starts itself

VENV ?= .venv
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages demo test check

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# redis-server, the Postgres server programs and Chromium (for the browser
# tests), from the system's packages.
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	bindir=$$(pg_config --bindir 2>/dev/null); \
	{ [ -x "$$bindir/initdb" ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
		|| missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

demo: system-packages setup
	$(VENV)/bin/parking-sale demo

test: system-packages setup
	$(VENV)/bin/pytest

check: setup
	$(VENV)/bin/ruff check app tests loadtest
	$(VENV)/bin/ruff format --check app tests loadtest
	$(VENV)/bin/mypy --strict app
