"""Triton kernels of medinfer, installed as ``medinfer.kernels``.

Each kernel module is the fast path of one op of ``medinfer.ops`` (``dilated_branches.py`` of
``medinfer/ops/dilated.py``, ``octave_conv.py`` of ``medinfer/ops/octave.py``), which holds the op's
reference, allocates the buffers and hands them to the kernel's ``plan``: kernels import nothing from
medinfer. ``aot.py`` compiles planned launches for sm_90 without a GPU. Importing this package never
imports Triton, so it is safe on machines without it.
"""
