"""Build the optional compiled core; everything else is in pyproject.toml.

If the C compiler or the Python headers are missing, the extension is
skipped and dneio runs on its pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("dneio._core._driver_c", ["src/dneio/_core/_driver_c.c"], optional=True),
    ]
)
