"""Channel-recurrent and attentive conditional VAE-GANs (crVAE-GAN, acVAE-GAN)"""
__version__ = "0.1.0"
