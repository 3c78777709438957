#!/usr/bin/env sh
# The Python environment a local tritonserver (the nvidia-pytriton wheel) runs edgead's models
# in: numpy<2 (the wheel's Python backend stub is built against numpy 1.x) and edgead's
# runtime, nothing else. Usage: sh tools/triton-env.sh [FOLDER]   (default: .triton-env)
set -eu
cd "$(dirname "$0")/.."
env_dir="${1:-.triton-env}"
if [ ! -x "$env_dir/bin/python" ]; then
    python3 -m venv "$env_dir"
fi
"$env_dir/bin/pip" install -q 'numpy<2' 'opencv-python-headless<4.13' onnxruntime faiss-cpu \
    scikit-learn threadpoolctl click tqdm tabulate markdown pillow
"$env_dir/bin/pip" install -q --no-deps -e .
"$env_dir/bin/python" -c "import numpy, edgead.runtime.pipeline; print('triton env:', numpy.__version__)"
