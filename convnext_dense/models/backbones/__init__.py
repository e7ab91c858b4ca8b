from .convnext import ConvNeXt

__all__ = ['ConvNeXt']
