from .backbones import ConvNeXt, ConvNeXtIsotropic
from .necks import SimpleFeaturePyramid

__all__ = ['ConvNeXt', 'ConvNeXtIsotropic', 'SimpleFeaturePyramid']
