"""Acceleration: fused C++ CPU kernels for BatchNorm -> ReLU -> pooling, and data-parallel training."""
