from .convnext import ConvNeXt
from .convnext_isotropic import ConvNeXtIsotropic

__all__ = ['ConvNeXt', 'ConvNeXtIsotropic']
