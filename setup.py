"""Build hook for the one C extension (metadata lives in setup.cfg).

``tgateway.storage._sha256x2`` computes two SHA-256 states over the same bytes in one pass with
the x86 SHA extensions (see its source). It is an accelerator only: without a C compiler, or
on another CPU, the build goes on without it and the gateway hashes with hashlib.
"""

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler at all
            print(f"warning: C extensions not built ({e}); hashlib is used instead")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # no Python headers, a compiler error
            print(f"warning: {ext.name} not built ({e}); hashlib is used instead")


setup(
    # twisted/plugins has no __init__.py (it is Twisted's namespace for plugins), so find: in
    # setup.cfg cannot see it; listed here, a regular (non-editable) install ships the plugin.
    packages=find_packages(include=["tgateway", "tgateway.*"]) + ["twisted.plugins"],
    ext_modules=[
        Extension(
            "tgateway.storage._sha256x2",
            ["tgateway/storage/_sha256x2.c"],
            extra_compile_args=["-O3", "-funroll-loops"],
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
