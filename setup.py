import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r"__version__ = '([^']+)'", (here / 'convnext_dense' / 'version.py').read_text()).group(1)
requirements = [line.split('#')[0].strip() for line in (here / 'requirements.txt').read_text().splitlines()]

setup(
    name='convnext-dense',
    version=version,
    description='ConvNeXt (V1/V2) backbone, layer-decay optimizer and configs for mmdet and mmseg',
    long_description=(here / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['convnext_dense', 'convnext_dense.*']),
    python_requires='>=3.10',
    install_requires=[r for r in requirements if r],
    # ONNX export and onnxruntime inference (convnext_dense.deploy, tools/deployment/export_onnx.py); never imported by
    # the package.
    extras_require={'deploy': ['onnx>=1.15', 'onnxruntime>=1.17']},
    license='Apache-2.0',
)
