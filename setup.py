"""The optional C accelerators; everything else is in pyproject.toml.

``tattler_etcd/codec/_cdecode.c``: the protobuf decoder and JSON writer (see
codec/_fast.py); ``tattler_etcd/_jsonscan.c``: the check behind jsonout.dumps.

``optional=True``: where no C compiler or Python headers are found the
install goes on without them and the package runs in pure Python (each
module chooses at import).
"""

from __future__ import annotations

import pathlib

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """``build_ext`` that removes a module's old build from the checkout when its new build fails.

    Why: an editable install puts each built module beside its source. When
    a later build of an optional module fails, setuptools goes on, and the
    old ``.so`` stays there and is imported: compiled from another version
    of the C source, it may lack functions or read the tables differently.
    Without it, the package runs in pure Python, which is always right.
    """

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception:
            *package, name = ext.name.split(".")
            for old in pathlib.Path(*package).glob(f"{name}.*.so"):
                old.unlink()
                print(f"removed the old build {old}: its source no longer builds")
            raise


setup(
    cmdclass={"build_ext": BuildExt},
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
