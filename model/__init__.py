"""Float CC-ST-AE: simulated and real 4D-STEM data, the Keras model, training, strain maps.

The first stage of the pipeline model -> quant -> firmware; it imports neither of the others.
"""
__version__ = "0.1.0"
