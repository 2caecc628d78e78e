"""Shared pytest setup.

The jax oracle computes in float64, like the NumPy code under test. Every
session compiles into a fresh private s2sgrad cache, so tests exercise the
compiler rather than modules cached by an earlier version of it, and leave
the user's cache alone. Every module the compiler prints during the session is
checked to be exactly what black would print (the printer lays code out in
black's style itself; see s2sgrad.codegen). The ``op_module`` fixture writes every systematic op
case (``op_cases.py``) into one real module file, so ``inspect.getsource``
works on each case function.
"""

import importlib.util
import sys

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")


def pytest_configure(config):
    """Keep jax's compiled oracles between runs (XLA compiles dominate the op tests' time)."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(cache.mkdir("jax-compilation-cache")))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session", autouse=True)
def _fresh_s2sgrad_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("S2SGRAD_CACHE_DIR", str(tmp_path_factory.mktemp("s2sgrad") / "cache"))
        yield


@pytest.fixture(scope="session", autouse=True)
def _generated_code_is_black_formatted():
    import difflib

    import black

    from s2sgrad import codegen

    printed = codegen.module_source

    def checked(*args, **kwargs):
        text, free_names = printed(*args, **kwargs)
        formatted = black.format_str(text, mode=black.Mode(line_length=codegen.LINE_LENGTH))
        if formatted != text:
            diff = "".join(
                difflib.unified_diff(
                    text.splitlines(True), formatted.splitlines(True), "printed", "black"
                )
            )
            raise AssertionError(f"the printer's layout differs from black's:\n{diff}")
        return text, free_names

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codegen, "module_source", checked)
        yield


@pytest.fixture(scope="session")
def op_module(tmp_path_factory):
    from op_cases import CASES, module_source

    path = tmp_path_factory.mktemp("op_cases") / "s2sgrad_op_cases.py"
    path.write_text(module_source(CASES))
    spec = importlib.util.spec_from_file_location("s2sgrad_op_cases", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
