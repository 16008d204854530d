#!/bin/sh
# Install strongroom's wheel with the server extra into a new virtual environment.
#
#   deploy/install-wheel.sh WHEEL_DIR VENV
#
# EXTRAS names the wheel's extras, comma-separated (default: server; server,otel adds
# tracing). The dev extra, the test and lint tools, is refused: it has no place there.
# WHEEL_DIR holds exactly one strongroom-*.whl (what `python -m build` makes); VENV must not
# exist yet. The container image runs this script to install itself, and so does
# tests/test_packaging.py, in a clean virtual environment, so the image's install steps are
# checked on a machine without a container daemon and the two cannot drift apart. A
# systemd host uses it too (docs/deploy.md). PYTHON names the interpreter (default python3).
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 WHEEL_DIR VENV" >&2
    exit 64
fi
wheel_dir=$1
venv=$2

set -- "$wheel_dir"/strongroom-*.whl
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "$0: expected exactly one strongroom-*.whl in $wheel_dir" >&2
    exit 66
fi
wheel=$1
if [ -e "$venv" ]; then
    echo "$0: $venv exists; give a new directory" >&2
    exit 73
fi

extras=${EXTRAS:-server}
case ",$extras," in
    *,dev,*)
        echo "$0: the dev extra is for development, not for a server" >&2
        exit 64
        ;;
esac

# A virtual environment of its own (no system site packages): only what the wheel and its
# extras declare.
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "$wheel[$extras]"
# The installed set must be consistent, and the command must start.
"$venv/bin/python" -m pip check
"$venv/bin/strongroom" --version
