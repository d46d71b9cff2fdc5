"""Running a trained model: memory-planned tiling, file inference (read, denoise, ensemble, write), the ONNX
Runtime engine, and a photo's noise profile."""
