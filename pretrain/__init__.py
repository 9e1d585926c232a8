"""Stage 1: corpus -> tokenizer -> packed shards -> masked-LM training -> checkpoints."""
