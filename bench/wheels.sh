#!/usr/bin/env bash
# Wheels the GPU image lacks for bench/bench_train.py (its python is 3.12, x86-64; nothing can be
# fetched there), downloaded here into $1 (default .whl, which git must ignore) to be carried.
# The image has torch, triton, accelerate, peft, tokenizers, safetensors, pyarrow, pandas and
# transformers 5.17; it lacks TRL and its datasets, k12tune's pydantic and orjson, and the GPU
# extras. transformers and peft are carried to run the versions the CPU tests pin.
# Install there: python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#   --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src
set -euo pipefail
dest="${1:-.whl}"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$dest" \
    trl==1.16.0 transformers==5.24.0 peft==0.21.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
    xxhash==4.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    orjson==3.13.0 bitsandbytes==0.50.2 liger-kernel
ls -l "$dest"
