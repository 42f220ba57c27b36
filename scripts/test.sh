#!/usr/bin/env bash
# Installs dledgermq with its test dependencies, then runs lint, import contracts and the
# whole test suite. This is the README's test command and exactly what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
python3 -m ruff check dledgermq tests bench chaos
lint-imports
python3 -m pytest "$@"
