"""The slurm backend: each step of a job is one SLURM batch job.

backend      sbatch, squeue about its own jobs every status_interval, scancel, states
script       the constant batch script (argv stays argv)
docker_args  docker run with the docker runner's isolation, for the docker mode
"""

from appliance.runners.slurm.backend import SlurmBackend, create

__all__ = ["SlurmBackend", "create"]
