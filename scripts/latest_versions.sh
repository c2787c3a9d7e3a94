#!/usr/bin/env bash
# Catch the next upstream break on purpose: install the newest releases that pyproject.toml allows
# (no lock, no constraints) into a scratch venv and run the tests that exercise Optuna, Ray, timm and
# torch. Run it when you refresh requirements.lock; a failure here is an upstream change to handle
# (fix the code, or narrow the range in pyproject.toml) before the lock moves to it.
#
#   bash scripts/latest_versions.sh                  # scratch venv in /tmp/acmix-nas-latest
#   VENV=/path/to/venv bash scripts/latest_versions.sh tests/test_searcher.py -x   # other tests
#
# Needs the package index (several GB: the newest CUDA build of torch, which also runs on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/tmp/acmix-nas-latest}

python3 -m venv --clear "$VENV"
. "$VENV/bin/activate"
# pip's configuration files may hold constraints or a local mirror (some machines cap torch there):
# the newest releases come from the index itself
export PIP_CONFIG_FILE=/dev/null
pip install -q --upgrade pip
pip install -q --upgrade --upgrade-strategy eager -e ".[dev]"
pip check

echo "== newest versions allowed by pyproject.toml, against requirements.lock"
python - <<'PY'
from importlib.metadata import distributions
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

locked = {}
for line in open('requirements.lock'):
    if line.strip() and not line.lstrip().startswith(('#', '-')):
        req = Requirement(line.strip())
        if req.marker is None or req.marker.evaluate(default_environment()):
            locked[canonicalize_name(req.name)] = next(iter(req.specifier)).version
installed = {canonicalize_name(d.metadata['Name']): d.version for d in distributions()}
newer = {n: (locked.get(n, '-'), v) for n, v in sorted(installed.items()) if locked.get(n) != v and n != 'acmix-nas'}
for name in ('torch', 'torchvision', 'timm', 'optuna', 'optuna-dashboard', 'ray'):
    print(f"  {name:18} lock {locked.get(name, '-'):12} latest {installed.get(name, '-')}")
print(f"  {len(newer)} packages differ from the lock: " + ', '.join(f'{n} {a} -> {b}' for n, (a, b) in newer.items()))
PY

echo "== tests that touch Optuna, Ray, timm and torch APIs"
TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
    TESTS=(tests/test_searcher.py tests/test_search.py tests/test_gpus.py tests/test_fidelity.py
           tests/test_model.py tests/test_deploy.py tests/test_export.py tests/test_acmix.py tests/test_cost.py
           tests/test_train.py tests/test_dashboard.py -q)
fi
# the lock's own check (installed == lock) is meaningless here: this venv is not the lock
python -m pytest -p no:cacheprovider -k "not installed_environment_is_the_lock" "${TESTS[@]}"
