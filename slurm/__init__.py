"""How jobs reach a machine: the one place that knows about submitit executors.

cluster.py       cluster profiles (configs/cluster/*.yaml): partition, account, resources
backend.py       submit a job array and ask how its jobs are doing: debug | local | slurm
pretrain_job.py  pretraining as a submitit Checkpointable (requeue on timeout/preemption)
dev-cluster/     scripts that bring up a real single-node SLURM (tests, laptops)
"""
