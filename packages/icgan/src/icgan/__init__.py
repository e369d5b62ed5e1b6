"""Invertible conditional GANs (IcGAN)"""
__version__ = "0.1.0"
