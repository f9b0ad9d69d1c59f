"""Triton kernels of medinfer, installed as ``medinfer.kernels``.

Each kernel module pairs with a plain PyTorch reference in ``medinfer.models.layers`` and is reached
through ``medinfer.ops`` and the backend registry; importing this package never imports Triton, so it is
safe on machines without it.
"""
