"""Cluster deployment: batch-script and manifest templates for Slurm and KubeRay."""
