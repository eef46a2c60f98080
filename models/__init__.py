"""skysort inference contract: readers, preprocessing, networks and model bundles.

Usage: ``from models.io import read_spectrum``; ``from models.bundle import load_bundle``.
"""
