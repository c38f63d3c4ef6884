#!/usr/bin/env bash
# Make PyPI's mxnet 1.9.1 wheel for Linux aarch64 importable: tools/fix_mxnet_aarch64.sh [PYTHON]
#
# Why: libmxnet.so in mxnet-1.9.1-py3-none-manylinux2014_aarch64.whl was linked against Arm
# Performance Libraries (libarmpl_lp64_mp.so, libamath.so, libastring.so), and the wheel does not
# ship them. Without them `import mxnet` fails with
#     OSError: libarmpl_lp64_mp.so: cannot open shared object file: No such file or directory
# What libmxnet.so takes from those libraries is standard: CBLAS, LAPACK and LAPACKE functions,
# and C math and string functions (expf, logf, memcpy, ...). This script makes libmxnet.so load
# Debian's OpenBLAS (the OpenMP build, as MXNet itself uses OpenMP) and LAPACKE instead; glibc
# provides the rest. It edits the dynamic section of the installed libmxnet.so with patchelf.
#
# PYTHON is the interpreter whose mxnet is fixed (default: python3). Needs patchelf and the
# libraries of the Debian packages libopenblas0-openmp and liblapacke (tools/install.sh installs
# them on aarch64). Does nothing on other machines, when Arm Performance Libraries can be loaded,
# or when libmxnet.so was already fixed. Checked under emulation only (see README, 'Which computers').
set -euo pipefail

PY=${1:-python3}

machine=$("$PY" -c 'import platform; print(platform.machine())')
if [ "$machine" != aarch64 ]; then
  echo "fix_mxnet_aarch64: this is $machine, not aarch64: nothing to do"
  exit 0
fi

lib=$("$PY" - <<'EOF'
import importlib.util, os, sys
spec = importlib.util.find_spec('mxnet')   # finds the package without importing it
if spec is None:
    sys.exit('fix_mxnet_aarch64: mxnet is not installed for %s; run tools/install.sh first'
             % sys.executable)
print(os.path.join(spec.submodule_search_locations[0], 'libmxnet.so'))
EOF
)

loadable() {  # can this Python's dynamic loader open the library $1?
  "$PY" -c "import ctypes, sys; ctypes.CDLL(sys.argv[1])" "$1" 2>/dev/null
}

if loadable libarmpl_lp64_mp.so; then
  echo "fix_mxnet_aarch64: Arm Performance Libraries are installed: nothing to do"
  exit 0
fi

missing=()
command -v patchelf >/dev/null || missing+=(patchelf)
loadable libopenblas.so.0 || missing+=(libopenblas0-openmp)
loadable liblapacke.so.3 || missing+=(liblapacke)
if [ ${#missing[@]} -gt 0 ]; then
  echo "fix_mxnet_aarch64: needs the Debian packages: ${missing[*]}" >&2
  echo "  install them with: sudo apt-get install ${missing[*]}" >&2
  echo "  then run again: $0 $PY" >&2
  exit 1
fi

if patchelf --print-needed "$lib" | grep -qx 'libarmpl_lp64_mp.so'; then
  # patch a copy, then rename it over the original: an interrupted run leaves the original whole
  tmp="$lib.fix.$$"
  cp -p "$lib" "$tmp"
  trap 'rm -f "$tmp"' EXIT
  patchelf --remove-needed libarmpl_lp64_mp.so --remove-needed libamath.so \
           --remove-needed libastring.so \
           --add-needed libopenblas.so.0 --add-needed liblapacke.so.3 "$tmp"
  mv "$tmp" "$lib"
  trap - EXIT
  echo "fix_mxnet_aarch64: $lib now loads OpenBLAS and LAPACKE instead of Arm Performance Libraries"
else
  echo "fix_mxnet_aarch64: $lib does not ask for Arm Performance Libraries (already fixed)"
fi

# the proof: mxnet imports, and a matrix product and a Cholesky factorization are right
"$PY" - <<'EOF'
import numpy as np
import mxnet as mx
a = np.random.RandomState(0).normal(size=(6, 6)).astype('float32')
spd = a @ a.T + 6 * np.eye(6, dtype='float32')
product = mx.nd.dot(mx.nd.array(a), mx.nd.array(a.T)).asnumpy()
chol = mx.nd.linalg.potrf(mx.nd.array(spd)).asnumpy()
if not (np.allclose(product, a @ a.T, atol=1e-4) and np.allclose(chol @ chol.T, spd, atol=1e-3)):
    raise SystemExit('fix_mxnet_aarch64: mxnet imports, but its BLAS/LAPACK results are wrong')
print('fix_mxnet_aarch64: mxnet %s imports; BLAS and LAPACK results check out' % mx.__version__)
EOF
