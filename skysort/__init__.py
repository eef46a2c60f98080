"""skysort: classify stellar spectra and galaxy images with JAX/Flax CNNs and serve them.

Usage: ``skysort --help`` (console script ``skysort.cli:main``).
"""
