"""Synthetic data: dead-leaves images and a synthetic SIDD world written in SIDD's own file formats."""
