"""Build the optional compiled core; everything else is in pyproject.toml.

If the C compiler or the Python headers are missing, the extension is
skipped and dneio runs on its pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dneio._core._driver_c",
            ["src/dneio/_core/_driver_c.c"],
            depends=["src/dneio/_core/_driver_c_api.h"],
            optional=True,
        ),
        # The asyncio runner's compiled part: it needs the core above.
        Extension(
            "dneio._hosts._asyncio._asyncio_c",
            ["src/dneio/_hosts/_asyncio/_asyncio_c.c"],
            include_dirs=["src/dneio/_core"],
            depends=["src/dneio/_core/_driver_c_api.h", "src/dneio/_core/_fast_reads.h"],
            optional=True,
        ),
        # The trio runner's compiled part: it needs the core above.
        Extension(
            "dneio._hosts._trio._trio_c",
            ["src/dneio/_hosts/_trio/_trio_c.c"],
            include_dirs=["src/dneio/_core"],
            depends=["src/dneio/_core/_driver_c_api.h", "src/dneio/_core/_fast_reads.h"],
            optional=True,
        ),
        # RequestQueue's fast path: it needs the core above.
        Extension(
            "dneio._primitives._queue_c",
            ["src/dneio/_primitives/_queue_c.c"],
            include_dirs=["src/dneio/_core"],
            depends=["src/dneio/_core/_driver_c_api.h", "src/dneio/_core/_fast_reads.h"],
            optional=True,
        ),
    ]
)
