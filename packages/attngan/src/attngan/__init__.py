"""AttnGAN: attentional text-to-image GAN"""

__version__ = "0.1.0"
