"""`intdim demo`: the whole pipeline on one CPU machine (docs/demo.md). WordNet becomes a corpus
and three tasks; a small RoBERTa pretrains on the corpus while the checkpoint watcher measures d90
on every checkpoint; the run ends with the d90 trajectory and a summary."""
