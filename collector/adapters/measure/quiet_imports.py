"""Imported before transformers in every worker interpreter (the forkserver's preload list
puts it second; worker.py imports it first for spawn mode).

transformers imports torchao, where it is installed, with its modeling utilities; torchao
then prints the CUDA kernels it could not load and torch warns about its enums, once per
interpreter, on a CPU-only host. Imported here first with its output silenced (by way of
transformers' modeling utilities, so exactly the torchao modules transformers wants), it
says nothing later. A broken install still fails loudly where the worker imports it.
"""

import contextlib

from collector.adapters.measure.backends.base import quiet

with quiet(), contextlib.suppress(ImportError):
    import torchao.quantization  # noqa: F401 - for the side effect above
    import transformers.modeling_utils  # noqa: F401 - the torchao modules it imports
