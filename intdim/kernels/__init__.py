"""Optional fused kernels for the Fastfood transform; the pure-torch code stays the reference."""
