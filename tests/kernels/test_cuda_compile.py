"""Every Numba CUDA kernel in kernels/ compiles for a real GPU (PTX for sm_80), on a machine without one.

The CUDA simulator runs kernels as Python, so it accepts code a GPU compiler rejects (run-time shared-array
shapes, Python containers, float64 where float32 was meant to stay...). Each `kernels/<variant>/cuda.py` lists its
kernels with `kernel_signatures()`; this test compiles all of them with `cuda.compile_ptx` in a fresh process with
the simulator off. That needs NVIDIA's numba-cuda with the CUDA compiler wheels (`pip install
"numba-cuda[cu12]==0.30.4"`, about 600 MB): without it the test is skipped and says so.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(f"kernels.{path.parent.name}.cuda" for path in (ROOT / "kernels").glob("*/cuda.py"))
COMPILE = """
import json, sys
from numba import cuda
from importlib import import_module
module = import_module(sys.argv[1])
if not hasattr(module, "kernel_signatures"):
    sys.exit(f"{sys.argv[1]} has no kernel_signatures(): each kernels/<variant>/cuda.py lists its kernels as "
             "(name, Python function, signature) for this test (see kernels/flash_attention/cuda.py)")
compiled, failures = 0, []
for name, function, signature in module.kernel_signatures():
    try:
        cuda.compile_ptx(function, signature, cc=(8, 0))
        compiled += 1
    except Exception as error:
        failures.append(f"{name}{signature.args}: {type(error).__name__}: {str(error)[:2000]}")
print(json.dumps(dict(compiled=compiled, failures=failures)))
"""
NO_NUMBA_CUDA = ("numba-cuda is not installed, so the CUDA kernels cannot be compiled for a real GPU here "
                 "(only run on the simulator): pip install 'numba-cuda[cu12]==0.30.4' to check them")


def test_there_are_cuda_kernels_to_check():
    assert "kernels.flash_attention.cuda" in MODULES


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason=NO_NUMBA_CUDA)
@pytest.mark.parametrize("module", MODULES)
def test_cuda_kernels_compile_for_a_real_gpu(module):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    done = subprocess.run([sys.executable, "-c", COMPILE, module], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"{module}: the compiling process failed:\n{done.stderr[-4000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["failures"], f"{module}: kernels that do not compile for sm_80:\n" + "\n".join(result["failures"])
    assert result["compiled"] > 0
