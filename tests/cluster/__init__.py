"""The cluster test: real SLURM (with accounting), Ray and MLflow server on one machine (`make test-cluster`)."""
