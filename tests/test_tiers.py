"""The `slow` tier: the marker is registered and conftest's rules find the slow tests."""

import pathlib
import textwrap
import types

from tests import conftest

SOURCE = '''
import subprocess

import pytest


def run_tool(*args):
    return subprocess.run(["tool", *args])


def checked_run(*args):
    assert run_tool(*args).returncode == 0


@pytest.fixture
def exported(tmp_path):
    return export_lib.export_model(None, tmp_path)


def test_cli():
    checked_run("--help")


def test_uses_export(exported):
    pass


def test_converts(module):
    tf.lite.TFLiteConverter.from_concrete_functions([], module)


def test_pure_arithmetic():
    assert 1 + 1 == 2
'''


def test_slow_marker_is_registered(pytestconfig):
    assert any(line.startswith("slow:") for line in pytestconfig.getini("markers"))


def item(path, name, fixtures=()):
    return types.SimpleNamespace(fspath=path, name=name, originalname=name,
                                 fixturenames=list(fixtures))


def test_rules_follow_helpers_and_fixtures(tmp_path):
    path = tmp_path / "test_example.py"
    path.write_text(textwrap.dedent(SOURCE))
    assert conftest._slow_functions(path) == {"run_tool", "checked_run", "exported", "test_cli",
                                              "test_converts"}
    assert conftest.is_slow(item(path, "test_uses_export", ["exported", "tmp_path"]))
    assert not conftest.is_slow(item(path, "test_pure_arithmetic"))


def test_whole_files_are_slow():
    here = pathlib.Path(conftest.__file__).parent
    assert conftest.is_slow(item(here / "test_export.py", "test_anything"))
    assert conftest.is_slow(item(here / "test_tflite.py", "test_anything"))


def test_this_file_is_in_the_quick_tier(request):
    assert request.node.get_closest_marker("slow") is None
