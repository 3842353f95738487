"""Packaging: the ROS manifests, setup.py and the installed layout agree with each other and the code."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import setuptools
from catkin_pkg.package import parse_package

from codi_ros import cli, paths
from codi_ros.version import __version__

REPO = Path(__file__).resolve().parents[2]
PKG_DIR = REPO / "codi_ros"
SHARED_FOLDERS = ("launch", "config", "models")


@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    """The keyword arguments codi_ros/setup.py passes to setuptools.setup (run as pip and colcon run it)."""
    captured: dict = {}
    mp = pytest.MonkeyPatch()
    mp.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    mp.chdir(PKG_DIR)
    try:
        runpy.run_path(str(PKG_DIR / "setup.py"), run_name="__main__")
    finally:
        mp.undo()
    return captured


def _manifest(name: str):
    warnings: list[str] = []
    package = parse_package(str(REPO / name / "package.xml"), warnings=warnings)
    assert warnings == [], f"{name}/package.xml: {warnings}"
    return package


def test_package_xml_files_parse_and_agree_with_setup_py(setup_kwargs):
    ros, msgs = _manifest("codi_ros"), _manifest("codi_msgs")
    assert (ros.name, ros.get_build_type()) == ("codi_ros", "ament_python")
    assert (msgs.name, msgs.get_build_type()) == ("codi_msgs", "ament_cmake")
    assert setup_kwargs["name"] == ros.name
    assert setup_kwargs["version"] == ros.version == msgs.version == __version__
    assert "rosidl_interface_packages" in {g.name for g in msgs.member_of_groups}


def test_every_ros_package_the_code_imports_is_an_exec_depend():
    """A `from franka_msgs... import` without its <exec_depend> breaks a rosdep install on a fresh robot PC."""
    imported = set()
    for source in (PKG_DIR / "codi_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                if top.endswith(("_msgs", "_srvs", "_interfaces")) or top in ("rclpy", "ament_index_python"):
                    imported.add(top)
    assert {"codi_msgs", "franka_msgs", "rclpy"} <= imported
    assert imported - {d.name for d in _manifest("codi_ros").exec_depends} == set()


def test_setup_cfg_puts_executables_where_ros2_run_looks():
    cfg = configparser.ConfigParser()
    cfg.read(PKG_DIR / "setup.cfg")
    assert cfg["develop"]["script_dir"] == cfg["install"]["install_scripts"] == "$base/lib/codi_ros"


def test_data_files_install_every_shared_file(setup_kwargs):
    installed = {(target, (PKG_DIR / src).resolve()) for target, srcs in setup_kwargs["data_files"] for src in srcs}
    for _, src in installed:
        assert src.is_file(), f"data_files names a missing file: {src}"
    expected = {(f"share/codi_ros/{f.parent.relative_to(REPO).as_posix()}", f.resolve())
                for folder in SHARED_FOLDERS if (REPO / folder).is_dir()
                for f in (REPO / folder).rglob("*")
                if f.is_file() and not f.name.startswith(".") and "__pycache__" not in f.parts}
    assert ("share/codi_ros/config", (REPO / "config" / "world.yaml").resolve()) in expected
    assert expected <= installed, f"not installed: {sorted(expected - installed)}"
    assert ("share/codi_ros", (PKG_DIR / "package.xml").resolve()) in installed
    assert ("share/ament_index/resource_index/packages", (PKG_DIR / "resource" / "codi_ros").resolve()) in installed


def test_every_console_entry_point_names_an_existing_function(setup_kwargs):
    scripts = setup_kwargs["entry_points"]["console_scripts"]
    assert any(s.split("=")[0].strip() == "codi" for s in scripts)
    for script in scripts:
        name, target = (part.strip() for part in script.split("="))
        module, func = target.split(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, f"{name}: module {module} not found"
        # Parsed, not imported: node modules import rclpy, which only a ROS install has.
        tree = ast.parse(Path(spec.origin).read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert func in defined, f"{name}: {module} defines no function {func}"


def test_codi_help_lists_every_subcommand():
    env = {**os.environ, "PYTHONPATH": str(PKG_DIR)}
    out = subprocess.run([sys.executable, "-m", "codi_ros.cli", "--help"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in cli.COMMANDS:
        assert name in out.stdout


def test_paths_find_world_config_in_a_checkout(monkeypatch):
    monkeypatch.delenv("CODI_SHARE", raising=False)
    assert (paths.config_dir() / "world.yaml").resolve() == (REPO / "config" / "world.yaml").resolve()


_PROBE = """
try:
    import codi_ros.paths as p
except ImportError:
    print("not installed")
else:
    print(p.__file__); print(p.share_dir())
"""


def test_installed_copy_finds_shared_folders(tmp_path):
    """After `pip install ./codi_ros` (as `make test` does), the installed copy finds <prefix>/share/codi_ros."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CODI_SHARE", "AMENT_PREFIX_PATH")}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    if out.stdout.strip() == "not installed":
        pytest.skip(f"codi_ros is not pip-installed in {sys.prefix}")
    module_file, share = (Path(line) for line in out.stdout.split())
    assert not module_file.is_relative_to(PKG_DIR), "imported the source checkout, not the installed copy"
    assert share == Path(sys.prefix) / "share" / "codi_ros"
    assert (share / "config" / "world.yaml").read_bytes() == (REPO / "config" / "world.yaml").read_bytes(), \
        "the installed config is stale: re-run `make test` (or `pip install ./codi_ros`)"
