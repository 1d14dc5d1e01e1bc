"""Build script: compiles the Cython hot paths as part of `pip install`.

Metadata lives in pyproject.toml; this file only declares the extension modules so that
`pip install .` and `pip install -e .` compile them with no separate pre-step.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

EXTENSIONS = [
    Extension("cext.codec", ["cext/codec.pyx"]),
    Extension("quota_engine.charging.rating", ["quota_engine/charging/rating.pyx"]),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
