"""A stand-in for the lent GPU machine's Python image, for `bash scripts/gpu-check.sh --rehearse`.

    python scripts/gpu_machine.py VENV      # VENV: a fresh `python3 -m venv --without-pip` directory
    python scripts/gpu_machine.py --pins    # NAME==VERSION of every wheel the check carries

Links into VENV's site-packages this interpreter's copies of the packages the machine's image holds
(IMAGE: the device README's KINDS.md list, 2026-11-17), and only those, so a rehearsal finds what the
machine would and must take everything else from the carried wheels. Versions are this checkout's,
not the machine's: the rehearsal proves the carry is complete, not that the machine's versions fit
(pip's resolver on the machine takes a carried wheel wherever one does not).
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

IMAGE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numpy numpyro onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks
pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp""".split()
# What the check installs (gpu-check.sh's NEEDS); the carry holds their whole closure at this checkout's
# versions, less torch and numpy (the machine's, never replaced): pip on the machine takes a carried
# wheel only where the machine's version does not fit.
NEEDS = ("transformers", "peft", "accelerate", "safetensors", "rouge_score", "pyyaml", "pytest")
NEVER_CARRIED = {"torch", "numpy"}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def carried_pins(python_version: str = "3.12") -> list[str]:
    """NAME==VERSION of NEEDS and everything they require (markers read for the machine's Python)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    environment = {
        **default_environment(),
        "python_version": python_version,
        "python_full_version": f"{python_version}.3",
        "extra": "",
    }
    pins: dict[str, str] = {}
    todo = list(NEEDS)
    while todo:
        name = normal(todo.pop())
        if name in pins or name in NEVER_CARRIED:
            continue
        dist = importlib.metadata.distribution(name)
        pins[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                todo.append(requirement.name)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def link_image(venv: Path) -> int:
    site = next((venv / "lib").glob("python3*/site-packages"))
    wanted = {normal(n) for n in IMAGE} - {normal(p.split("==")[0]) for p in carried_pins()}
    linked = 0
    for dist in importlib.metadata.distributions():
        if normal(dist.metadata["Name"]) not in wanted or not dist.files:
            continue
        root = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files if f.parts and f.parts[0] != ".."}:
            source, target = root / top, site / top
            if source.exists() and not target.exists():
                target.symlink_to(source)
                linked += 1
    return linked


if __name__ == "__main__":
    if sys.argv[1] == "--pins":
        print(" ".join(carried_pins()))
    else:
        print(f"gpu_machine: linked {link_image(Path(sys.argv[1]))} image entries", file=sys.stderr)
