#!/usr/bin/env bash
# The GPU checks of issue 16 in one call, for a CUDA machine with PyTorch and Triton but no network
# (such as the device machines some sessions of this project are lent):
#   1. the tests parametrised over devices, on CUDA only (`-k cuda`): the compiled neuron's Triton
#      kernels against the autograd reference (float64/32, bf16, fp16, a whole ResNet under bf16
#      autocast, PLIF's leak gradient) and run.memory=lean's bit-identical gradients;
#   2. benchmarks/suite.py on the GPU: true peak memory, images/s, SpikingJelly's CUDA kernels.
#
# sakd runs from src/ (no install). SpikingJelly and loguru travel as wheels in .whl/ when the
# machine lacks them; made on a machine with network access, in the repository root:
#   python3 -m pip download --no-deps -d .whl spikingjelly==2.0.0 loguru
#
#   bash benchmarks/cuda_check.sh            # writes under $OUT if set, else benchmarks/results/
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sakd-site .whl/*.whl \
    && export PYTHONPATH=/tmp/sakd-site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CUBLAS_WORKSPACE_CONFIG=:4096:8  # deterministic cuBLAS: the tests compare gradients bit for bit
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  || exit 1
# the tests' limit leaves the suite most of a 10-minute call; each part's log comes back either way
timeout "${TESTS_TIMEOUT:-180}" python3 -m pytest -q -o addopts=-ra -p no:cacheprovider -k cuda \
  tests/test_neurons.py tests/test_memory.py tests/test_plugins.py 2>&1 | tee "$out/cuda-tests.log"
tests=${PIPESTATUS[0]}
timeout "${SUITE_TIMEOUT:-360}" python3 benchmarks/suite.py --out "$out/suite-cuda.json" "$@" 2>&1 | tee "$out/suite-cuda.log"
suite=${PIPESTATUS[0]}
echo "tests exit $tests, suite exit $suite"
exit $(( tests || suite ))
