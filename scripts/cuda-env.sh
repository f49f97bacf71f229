#!/usr/bin/env bash
# Prepares a CUDA build environment for `cargo build --release --features cuda` on a Linux x86-64
# machine with no system CUDA toolkit, from NVIDIA's wheels on PyPI, and prints the environment
# as `export` lines:
#
#     eval "$(scripts/cuda-env.sh)"            # prepare (first run: ~1 GiB download) + export
#     cargo build --release --features cuda
#
# Idempotent: a second run reuses what is there and only prints the exports. Progress and errors
# go to stderr; stdout carries only the export lines (also saved in $PREFIX/env.sh).
#
# Why CUDA 13 and not 12: the CUDA 12 compiler wheels on PyPI (nvidia-cuda-nvcc-cu12, every
# release 12.4-12.9 checked) contain only ptxas and libnvvm, no nvcc driver, cicc or cudafe++,
# so they cannot build candle's kernels. Since 13.0 NVIDIA publishes the whole compiler
# (nvidia-cuda-nvcc + nvidia-cuda-crt + nvidia-nvvm). With a system CUDA 12.x toolkit
# (12.0-12.9) this script is not needed: put its nvcc on PATH, set CUDA_COMPUTE_CAP, build.
#
# Settings (environment):
#   COCONUT_CUDA_PREFIX   where to install (default: <repo>/.cuda, git-ignored)
#   COCONUT_CUDA_VERSION  13.0 (default; the only one built here), 13.1, 13.2, 13.3 or 13.4:
#                         the releases cudarc 0.19.10 (Cargo.lock) knows. The NVIDIA driver must
#                         be CUDA 13 capable, R580 or newer: the kernels are shipped as PTX that
#                         the driver JIT-compiles, and cuBLAS 13 needs it too.
#   CUDA_COMPUTE_CAP      GPU architecture the kernels are built for: 90 (Hopper: H100/H200,
#                         default; becomes sm_90a), 80 (A100), 86 (A10/A40/RTX 30xx),
#                         89 (L4/L40/RTX 40xx).
#   PYTHON                Python >= 3.9 with the venv module (default: python3)
#
# What it installs and why (read off the build scripts of candle-kernels 0.11.1, cudaforge 0.1.6
# and cudarc 0.19.10, the versions in Cargo.lock), through NVIDIA's cuda-toolkit metapackage:
#   nvcc   nvcc, cudafe++, cicc, ptxas, fatbinary, crt headers, libnvvm: candle-kernels compiles
#          its .cu files to PTX and a static libmoe.a; cudarc reads the version off `nvcc --version`
#   cudart cuda_runtime.h, cuda.h, cuda_fp16/bf16/fp8.h, libcudart.so (candle-kernels links it)
#   cccl   cub/, thrust/, cuda/std/ headers (candle's sort and moe kernels)
#   cublas, curand, nvrtc   libcublas(Lt).so, libcurand.so, libnvrtc.so: cudarc links them
#          (candle enables its dynamic-linking feature)
# The wheels install one toolkit tree, site-packages/nvidia/cu13/{bin,include,lib,nvvm}. The
# script adds $PREFIX/cuda-<version>/ beside it: links to that tree, a lib64/ with the unversioned
# .so names the linker wants, and lib64/stubs/libcuda.so. cudarc links the driver library
# libcuda.so, which no wheel ships, so the script builds a link-time stub (every cu* entry point
# cudarc declares, each returning CUDA_ERROR_STUB_LIBRARY) with the system C compiler. On a
# machine with an NVIDIA driver the binary loads the driver's real libcuda.so.1; on one without,
# the stub is put on LD_LIBRARY_PATH so that the CUDA binary still starts (and runs on the CPU).
set -euo pipefail

die() {
    echo "cuda-env: error: $*" >&2
    exit 1
}
say() { echo "cuda-env: $*" >&2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${COCONUT_CUDA_PREFIX:-$repo/.cuda}"
version="${COCONUT_CUDA_VERSION:-13.0}"
cap="${CUDA_COMPUTE_CAP:-90}"
python="${PYTHON:-python3}"

# The cuda-toolkit metapackage release of each toolkit release (its last update on PyPI); it
# pins every component wheel.
case "$version" in
13.0) meta=13.0.3.0 ;;
13.1) meta=13.1.2.0 ;;
13.2) meta=13.2.2 ;;
13.3) meta=13.3.1 ;;
13.4) meta=13.4.3 ;;
12.*) die "COCONUT_CUDA_VERSION=$version: PyPI has no CUDA 12 nvcc (nvidia-cuda-nvcc-cu12 ships only ptxas); install NVIDIA's CUDA 12 toolkit instead, put its bin/ on PATH and set CUDA_COMPUTE_CAP" ;;
*) die "COCONUT_CUDA_VERSION=$version is not supported (expected 13.0, 13.1, 13.2, 13.3 or 13.4: the CUDA releases cudarc 0.19.10 builds against)" ;;
esac
pins="cuda-toolkit[nvcc,cudart,cccl,cublas,curand,nvrtc]==$meta"
case "$cap" in
"" | *[!0-9a-z]*) die "CUDA_COMPUTE_CAP=$cap is not a compute capability (e.g. 90, 80, 86)" ;;
esac

[ "$(uname -s)" = Linux ] || die "Linux only (this is $(uname -s))"
[ "$(uname -m)" = x86_64 ] || die "x86-64 only (this is $(uname -m))"
command -v "$python" >/dev/null 2>&1 || die "$python not found: set PYTHON to a Python >= 3.9 with venv"
"$python" -c 'import sys, venv; sys.exit(sys.version_info < (3, 9))' 2>/dev/null ||
    die "$python is older than 3.9 or lacks the venv module (Debian: apt-get install python3-venv)"
command -v cc >/dev/null 2>&1 || die "no C compiler (cc) found: nvcc needs gcc as its host compiler"
command -v c++ >/dev/null 2>&1 || die "no C++ compiler (c++) found: nvcc needs g++ as its host compiler"

mkdir -p "$prefix" || die "cannot create $prefix"
venv="$prefix/venv-$version"
root="$prefix/cuda-$version"
stamp="$venv/.coconut-pins"

# 1. The wheels, in a venv of their own.
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$pins" ]; then
    if [ ! -x "$venv/bin/python" ]; then
        say "creating $venv"
        "$python" -m venv "$venv" || die "cannot create a venv at $venv"
    fi
    say "installing $pins into $venv (about 1 GiB to download)"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "$pins" >&2 ||
        die "pip install failed (is PyPI reachable?): $pins"
    echo "$pins" >"$stamp"
    rm -rf "$root" # rebuild the links from the new wheels
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
tk="$site/nvidia/cu13"
for f in bin/nvcc bin/cudafe++ nvvm/bin/cicc include/cuda_runtime.h include/cccl/cub/cub.cuh; do
    [ -e "$tk/$f" ] || die "$tk/$f missing from the wheels: delete $venv and rerun"
done

# 2. The toolkit root the build sees. nvcc finds cicc, libdevice and the headers relative to its
# real path (bin/nvcc.profile: TOP = bin/..), so bin/, include/ and nvvm/ are links to the
# wheels' tree; lib64/ holds our links and the driver stub.
if [ ! -f "$root/.complete" ]; then
    say "assembling $root"
    rm -rf "$root"
    mkdir -p "$root/lib64/stubs"
    for d in bin include nvvm; do ln -s "$tk/$d" "$root/$d"; done
    for f in "$tk"/lib/*.so* "$tk"/lib/*.a; do
        if [ -e "$f" ]; then ln -s "$f" "$root/lib64/"; fi
    done
    # The linker's names: libcublas.so -> libcublas.so.13, ...
    for f in "$root"/lib64/*.so.*; do
        base="$(basename "$f")"
        plain="${base%%.so.*}.so"
        [ -e "$root/lib64/$plain" ] || ln -s "$base" "$root/lib64/$plain"
    done
    ln -s lib64 "$root/lib"
    for lib in cudart cublas cublasLt curand nvrtc; do
        [ -e "$root/lib64/lib$lib.so" ] || die "lib$lib.so missing from the wheels"
    done

    # The driver stub: every cu* function cudarc's driver bindings declare.
    registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
    find_bindings() { find "$registry" -maxdepth 5 -type d -path '*/cudarc-0.19.*/src/driver/sys' 2>/dev/null | sort | tail -n1; }
    bindings="$(find_bindings)"
    if [ -z "$bindings" ]; then
        say "cudarc's sources are not in the cargo registry yet: cargo fetch"
        (cd "$repo" && cargo fetch --locked >&2) || die "cargo fetch failed"
        bindings="$(find_bindings)"
        [ -n "$bindings" ] || die "cudarc 0.19 sources not found under $registry"
    fi
    {
        echo "/* Link-time stand-in for the NVIDIA driver library, generated by scripts/cuda-env.sh"
        echo "   from $bindings. Every entry point returns CUDA_ERROR_STUB_LIBRARY (34). */"
        grep -rhoE '\bfn cu[A-Za-z0-9_]+' "$bindings" | sed 's/^fn //' | sort -u |
            sed 's/.*/int &(void) { return 34; }/'
    } >"$root/lib64/stubs/cuda_stub.c"
    [ "$(grep -c 'return 34' "$root/lib64/stubs/cuda_stub.c")" -gt 100 ] ||
        die "could not read the driver entry points from $bindings"
    cc -shared -fPIC -O0 -w -Wl,-soname,libcuda.so.1 -o "$root/lib64/stubs/libcuda.so" \
        "$root/lib64/stubs/cuda_stub.c" || die "cannot build the libcuda.so stub"
    ln -s libcuda.so "$root/lib64/stubs/libcuda.so.1"

    "$root/bin/nvcc" --version >/dev/null 2>&1 || die "$root/bin/nvcc does not run"
    touch "$root/.complete"
fi

# 3. The compiler end to end, on a kernel that uses every header family candle's kernels use.
if [ ! -f "$root/.checked-sm$cap" ]; then
    say "checking nvcc for compute capability $cap"
    tmp="$(mktemp -d)"
    cat >"$tmp/t.cu" <<'CU'
#include <cuda.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <mma.h>
#include <cub/cub.cuh>
#include <thrust/scan.h>
#include <cuda/std/limits>
extern "C" __global__ void k(__nv_bfloat16 *x) { x[threadIdx.x] = __float2bfloat16(1.0f); }
CU
    if ! "$root/bin/nvcc" -gencode "arch=compute_$cap,code=sm_$cap" --ptx -std=c++17 \
        -o "$tmp/t.ptx" "$tmp/t.cu" >&2; then
        rm -rf "$tmp"
        die "nvcc cannot compile a test kernel for compute capability $cap (see above)"
    fi
    rm -rf "$tmp"
    touch "$root/.checked-sm$cap"
fi

# 4. The environment. The stub goes on LD_LIBRARY_PATH only where no driver is installed: it
# must never shadow a real libcuda.so.1.
ldpath="$root/lib64"
if ! { ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; } &&
    [ ! -e /usr/lib/x86_64-linux-gnu/libcuda.so.1 ] && [ ! -e /usr/lib64/libcuda.so.1 ]; then
    say "no NVIDIA driver here (no libcuda.so.1): the stub goes on LD_LIBRARY_PATH; a CUDA build runs, on the CPU only"
    ldpath="$ldpath:$root/lib64/stubs"
elif command -v nvidia-smi >/dev/null 2>&1; then
    drv="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 || true)"
    say "NVIDIA driver ${drv:-(version unknown)}; CUDA $version needs R580 or newer"
fi
env_file="$prefix/env.sh"
{
    echo "export CUDA_ROOT=\"$root\""
    echo "export CUDA_PATH=\"$root\""
    echo "export CUDA_HOME=\"$root\""
    echo "export NVCC=\"$root/bin/nvcc\""
    echo "export CUDA_COMPUTE_CAP=\"$cap\""
    echo "export PATH=\"$root/bin:\${PATH}\""
    echo "export LIBRARY_PATH=\"$root/lib64:$root/lib64/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}\""
    echo "export LD_LIBRARY_PATH=\"$ldpath\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
} >"$env_file"
say "CUDA $version for compute capability $cap ready in $root (later shells: source $env_file)"
cat "$env_file"
