"""When the CLI re-executes itself under tcmalloc (allocator.py: preload_plan)."""

import pytest

from loraqa import allocator

LIB = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


@pytest.fixture
def library_present(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: LIB)


def test_linux_with_library_preloads_it(library_present):
    plan = allocator.preload_plan({"PATH": "/bin"}, platform="linux")
    assert plan["LD_PRELOAD"] == LIB and plan["PATH"] == "/bin"


def test_an_existing_preload_is_kept_after_tcmalloc(library_present):
    plan = allocator.preload_plan({"LD_PRELOAD": "/opt/libfoo.so"}, platform="linux")
    assert plan["LD_PRELOAD"] == f"{LIB} /opt/libfoo.so"


@pytest.mark.parametrize(
    "environ, platform",
    [
        ({}, "darwin"),  # no LD_PRELOAD on macOS
        ({"LORAQA_ALLOCATOR": "system"}, "linux"),  # the user's opt-out
        ({"LD_PRELOAD": LIB}, "linux"),  # already under tcmalloc
        ({"LORAQA_ALLOCATOR_REEXECUTED": "1"}, "linux"),  # re-executed once already: never loop
    ],
)
def test_no_reexec(library_present, environ, platform):
    assert allocator.preload_plan(environ, platform=platform) is None


def test_no_library_no_reexec(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    assert allocator.preload_plan({}, platform="linux") is None
