"""Optional compiled kernels for hot paths; the pure-torch code stays the reference and fallback."""
