"""The optional C accelerators; everything else is in pyproject.toml.

``tattler_etcd/codec/_cdecode.c``: the protobuf decoder (see codec/_fast.py);
``tattler_etcd/_jsonscan.c``: the check behind jsonout.dumps.

``optional=True``: where no C compiler or Python headers are found the
install goes on without them and the package runs in pure Python (each
module chooses at import).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tattler_etcd.codec._cdecode",
            ["tattler_etcd/codec/_cdecode.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension("tattler_etcd._jsonscan", ["tattler_etcd/_jsonscan.c"], optional=True, extra_compile_args=["-O2"]),
    ],
)
