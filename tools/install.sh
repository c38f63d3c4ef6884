#!/usr/bin/env bash
# Install what the notebooks need. .ci/run and the Dockerfile both use this script.
#
#     tools/install.sh                # system packages (see below), .venv, requirements.txt
#     tools/install.sh --dev          # requirements-dev.txt instead (adds the tests' packages)
#     tools/install.sh --venv DIR     # the virtual environment in DIR (default: .venv here)
#     tools/install.sh --no-venv      # into the Python itself (a container's own Python)
#     tools/install.sh --system-only  # only the system packages (the Dockerfile's root step)
#     tools/install.sh --no-system    # skip the system packages
#
# System packages, on Debian or Ubuntu, only those not yet installed, and only as root (otherwise
# the script prints the sudo command and goes on):
#   dataset-fashion-mnist  the real Fashion-MNIST in /usr/share/datasets/fashion-mnist (without it
#                          the loader downloads the files on first use)
#   libgomp1               OpenMP, which the mxnet wheels load but do not ship
#   libquadmath0           x86-64: needed by the libgfortran that the mxnet wheel ships
#   libopenblas0-openmp, liblapacke, patchelf
#                          aarch64: stand in for the Arm Performance Libraries that the mxnet
#                          wheel needs but does not ship (tools/fix_mxnet_aarch64.sh)
# Python: $PYTHON if set, else python3.11, else python3; it must be Python 3.11 (mxnet 1.9.1 has
# wheels up to 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
requirements=requirements.txt
venv=.venv
system=yes
python_part=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) requirements='requirements-dev.txt' ;;
    --venv) [ $# -ge 2 ] || { echo "install.sh: --venv needs a folder" >&2; exit 2; }
            venv=$2; shift ;;
    --no-venv) venv= ;;
    --system-only) python_part= ;;
    --no-system) system= ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$1'. Options:" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[ -n "$system" ] || [ -n "$python_part" ] \
  || { echo "install.sh: --system-only and --no-system leave nothing to do" >&2; exit 2; }

machine=$(uname -m)

install_system_packages() {
  if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    echo "install.sh: no apt-get here (not Debian or Ubuntu): skipping system packages."
    echo "  Fashion-MNIST will be downloaded on first use; on Linux, mxnet needs libgomp (OpenMP)."
    return
  fi
  local wanted=(libgomp1) missing=() pkg
  [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
    || wanted+=(dataset-fashion-mnist)
  case "$machine" in
    x86_64) wanted+=(libquadmath0) ;;
    aarch64) wanted+=(libopenblas0-openmp liblapacke patchelf) ;;
  esac
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: not root, so not installing the Debian packages: ${missing[*]}"
    echo "  to install them: sudo apt-get install --no-install-recommends ${missing[*]}"
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  local available=()
  for pkg in "${missing[@]}"; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then
      available+=("$pkg")
    else
      echo "install.sh: $pkg is not in this system's package lists: skipped" \
           "(without dataset-fashion-mnist the loader downloads the files on first use)"
    fi
  done
  if [ ${#available[@]} -gt 0 ]; then
    echo "install.sh: apt-get install ${available[*]}"
    apt-get install -y -qq --no-install-recommends "${available[@]}" >/dev/null
  fi
}

install_python_packages() {
  local py=${PYTHON:-$(command -v python3.11 || command -v python3 || true)} found
  if [ -z "$py" ]; then
    found="no python3.11 or python3 on PATH"
  elif ! command -v "$py" >/dev/null; then
    found="PYTHON=$py, which does not exist"
  elif ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    found="$py, which is $("$py" --version 2>&1)"
  fi
  if [ -n "${found:-}" ]; then
    echo "install.sh: needs Python 3.11 (mxnet 1.9.1 has wheels up to 3.11); found $found." >&2
    echo "  Install Python 3.11 (python.org, pyenv, or your system's python3.11 package)" \
         "and run: PYTHON=/path/to/python3.11 $0" >&2
    exit 1
  fi
  if [ -n "$venv" ]; then
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    py=$venv/bin/python
  fi
  "$py" -m pip install -q --upgrade pip
  "$py" -m pip install -r "$requirements"
  if [ "$machine" = aarch64 ]; then
    bash tools/fix_mxnet_aarch64.sh "$py"
  fi
  # the check: the package imports (that imports mxnet and numpy)
  "$py" -c 'import d2l_utils, mxnet, numpy, platform; print("install.sh: d2l_utils %s with mxnet %s, numpy %s, Python %s on %s" % (d2l_utils.__version__, mxnet.__version__, numpy.__version__, platform.python_version(), platform.machine()))'
  if [ -n "$venv" ]; then
    echo "install.sh: done. Start with: . $venv/bin/activate && jupyter notebook notebooks/"
  fi
}

[ -z "$system" ] || install_system_packages
[ -z "$python_part" ] || install_python_packages
