"""Hand-written GPU kernels of the pretrain stage (Triton; tests run them in its interpreter)."""
