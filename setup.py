"""Build the optional C record decoder (``omni_data/store/_fastcodec.c``); everything else is
declared in pyproject.toml. ``optional=True``: without a C compiler the install still succeeds
and ``omni_data.store.codec`` decodes in pure Python (same records, slower)."""
import numpy
from setuptools import Extension, setup

setup(ext_modules=[Extension("omni_data.store._fastcodec", ["omni_data/store/_fastcodec.c"],
                             include_dirs=[numpy.get_include()], optional=True)])
