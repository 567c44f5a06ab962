"""hls4ml conversion, C-simulation, resource estimates and reports (imports model and quant)."""
