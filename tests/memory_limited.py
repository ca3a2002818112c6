"""Run loop's command line under an address-space limit: the process's size once the libraries are
imported plus LOOP_HEADROOM_MIB. A batch whose activations need more meets a real out-of-memory error
of torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory"), not an injected one.

    MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=65536 OMP_NUM_THREADS=1 LOOP_HEADROOM_MIB=850 \\
        python tests/memory_limited.py --model_name_or_path ... --auto_find_batch_size true

glibc reads MALLOC_* once, at the start: the caller sets them. A fixed mmap threshold gives memory
back to the system when a tensor is freed; with glibc's moving threshold a batch freed after the
search's trial stays in the process (still counted against the limit) and the first training step
can fail where the same batch fit a moment earlier."""

import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402  the heavy imports first: the limit is on top of them
import transformers  # noqa: E402,F401
from transformers import DistilBertForSequenceClassification  # noqa: E402,F401

import loop  # noqa: E402
import loop.core  # noqa: E402,F401
import loop.data  # noqa: E402,F401

torch.set_num_threads(1)


def vm_size_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmSize:"))


limit = (vm_size_mib() + int(os.environ["LOOP_HEADROOM_MIB"])) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
loop.main(sys.argv[1:])
