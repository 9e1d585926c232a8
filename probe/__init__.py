"""Stage 2: checkpoint x task -> full fine-tune -> d90 search -> records -> plots."""
