"""The training engine: the loop, its data sources and device cropper, the run folder and its pictures."""
