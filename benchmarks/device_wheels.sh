# Sourced by the device scripts (benchmarks/gpu_check.sh; experiments/gpu_study.sh until 82d7784) from the repository
# root: installs the carried wheels of .whl/ into /tmp/site and puts it, and the repository, on
# PYTHONPATH. The image's own flax / optax / orbax match its jax; ours are installed only where the
# image's are older than the versions this project was tested with (or missing). PY: the interpreter.
wheels=$(${PY:-python3} -c '
import glob, importlib.metadata as md
from packaging.version import Version
pins = {"flax": "0.12.8", "optax": "0.2.8", "orbax-checkpoint": "0.12.8"}
prefix = {"flax": "flax-", "optax": "optax-", "orbax-checkpoint": "orbax_checkpoint-"}
out = [w for w in glob.glob(".whl/*.whl") if not any(w.split("/")[-1].startswith(p) for p in prefix.values())]
for name, pin in pins.items():
    try:
        have = Version(md.version(name))
    except md.PackageNotFoundError:
        have = None
    if have is None or have < Version(pin):
        out += glob.glob(f".whl/{prefix[name]}*.whl")
print(" ".join(out))
')
echo "installing: $wheels"
${PY:-python3} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
