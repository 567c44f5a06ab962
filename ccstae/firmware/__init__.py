"""hls4ml conversion, C-simulations, front end, vendor flows, resource estimates (imports quant and below)."""
