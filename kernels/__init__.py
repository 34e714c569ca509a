"""Compute kernels for memory methods: one sub-package per op (PyTorch reference + Triton)."""
