"""LR-GAN: layered recursive GAN with the STNM compositing op"""
__version__ = "0.1.0"
