"""eyescream-style face GAN with a coarse-to-fine upscaler"""
__version__ = "0.1.0"
