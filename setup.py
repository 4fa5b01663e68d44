"""The optional C decoder (tattler_etcd/codec/_cdecode.c); everything else is in pyproject.toml.

``optional=True``: where no C compiler or Python headers are found the
install goes on without it and the codec runs in pure Python
(tattler_etcd/codec/_fast.py chooses at import).
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
    ],
)
