#!/usr/bin/env python3
"""Static checks of the ROS 2 layer that need no ROS install (run by CI and codi_ros/test/test_ros_static.py).

Every node in codi_ros/setup.py's NODE_ENTRY_POINTS:
  - its module and entry function exist;
  - every parameter it reads (``get_parameter("x")``, ``param(self, "x")``, ``world_config(self)``,
    ``torch_threads(self)``) is
    declared in it (``declare_parameter("x", default, ...)``), else rclpy raises at start-up.
Every launch/*.launch.py:
  - compiles;
  - each launch_ros ``Node(...)`` of package codi_ros names an executable of NODE_ENTRY_POINTS;
  - each parameter it passes, inline or in a config/*.yaml parameter file it names, is declared by
    that node, and a YAML value has the type of the declared default (rclpy rejects an integer for a
    double parameter); each parameter-file section names a node that a launch file using the file (directly
    or through an included launch file of ours) runs, in a namespace it runs in;
  - each launch file of ours it includes exists, and every other package it names (Node ``package=``,
    ``get_package_share_directory``) is an exec_depend of codi_ros/package.xml.
config/franka_controllers.yaml (the controllers of the real arms):
  - the controller manager runs at 1 kHz and defines every controller the launch files spawn and
    franka_bringup spawns (joint_state_broadcaster, franka_robot_state_broadcaster);
  - each arm's joint_trajectory_controller commands positions of exactly that arm's 7 joints, as
    codi_ros.robot.fr3 names them (``<arm>_`` + ARM_JOINTS), interpolating with splines.

Usage: check_ros_static.py [REPO_ROOT]. Prints what it checked; exit status 1 with one line per problem.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "codi_ros"
PER_ARM = "<per-arm>"   # a Node whose namespace is not a literal: the launch runs it once per arm


class Unknown(Exception):
    """A default value the checker cannot evaluate statically (its type is then not checked)."""


# ------------------------------------------------------------------------------------------------ evaluation
@dataclass
class Module:
    """One parsed Python module of the package, with what a constant lookup needs."""

    path: Path
    tree: ast.Module
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)    # local name -> (module, name)
    assigns: dict[str, ast.expr] = field(default_factory=dict)            # module-level NAME = expr
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)


@dataclass(frozen=True)
class Instance:
    """``Cls()``: its attributes are the class's field defaults."""

    module: Module
    cls: ast.ClassDef


class Evaluator:
    """Evaluates the literal-ish default values of declare_parameter calls across the package's modules."""

    def __init__(self, package_root: Path):
        self.root = package_root          # the folder holding the codi_ros Python package
        self._modules: dict[str, Module | None] = {}

    def module(self, name: str) -> Module | None:
        if name not in self._modules:
            path = self.root / (name.replace(".", "/") + ".py")
            self._modules[name] = self.load(path) if name.split(".")[0] == PACKAGE and path.is_file() else None
        return self._modules[name]

    @staticmethod
    def load(path: Path) -> Module:
        tree = ast.parse(path.read_text(), filename=str(path))
        mod = Module(path, tree)
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    mod.imports[alias.asname or alias.name] = (node.module, alias.name)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                mod.assigns[node.targets[0].id] = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                mod.assigns[node.target.id] = node.value
            elif isinstance(node, ast.ClassDef):
                mod.classes[node.name] = node
        return mod

    def value(self, expr: ast.expr, mod: Module, local: dict[str, ast.expr]) -> Any:
        if isinstance(expr, ast.Constant):
            return expr.value
        if isinstance(expr, (ast.List, ast.Tuple)):
            return [self.value(e, mod, local) for e in expr.elts]
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
            return -self.value(expr.operand, mod, local)
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            if expr.func.id in ("list", "tuple") and len(expr.args) == 1:
                return list(self.value(expr.args[0], mod, local))
            if not expr.args and not expr.keywords:
                return self.instance(expr.func.id, mod)
        if isinstance(expr, ast.Name):
            return self.name(expr.id, mod, local)
        if isinstance(expr, ast.Attribute):
            obj = self.value(expr.value, mod, local)
            if isinstance(obj, Instance):
                for stmt in obj.cls.body:
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                            and stmt.target.id == expr.attr and stmt.value is not None:
                        return self.value(stmt.value, obj.module, {})
        raise Unknown(ast.unparse(expr))

    def name(self, name: str, mod: Module, local: dict[str, ast.expr]) -> Any:
        if name in local:
            return self.value(local[name], mod, {k: v for k, v in local.items() if k != name})
        if name in mod.assigns:
            return self.value(mod.assigns[name], mod, {})
        if name in mod.imports:
            other = self.module(mod.imports[name][0])
            if other is not None:
                return self.name(mod.imports[name][1], other, {})
        raise Unknown(name)

    def instance(self, cls_name: str, mod: Module) -> Instance:
        if cls_name in mod.classes:
            return Instance(mod, mod.classes[cls_name])
        if cls_name in mod.imports:
            other = self.module(mod.imports[cls_name][0])
            if other is not None:
                return self.instance(mod.imports[cls_name][1], other)
        raise Unknown(f"{cls_name}()")


def ros_type(value: Any) -> str | None:
    """The rclpy parameter type a Python / YAML value gets, or None when it cannot be told."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)) and value:
        types = {ros_type(v) for v in value}
        return f"{types.pop()}_array" if len(types) == 1 and None not in types else "mixed_array"
    return None


# ------------------------------------------------------------------------------------------------ nodes
@dataclass
class NodeInfo:
    executable: str
    module: str
    declared: dict[str, str | None]     # parameter -> rclpy type of its default (None: not evaluated)


def local_assigns(func: ast.FunctionDef) -> dict[str, ast.expr]:
    out: dict[str, ast.expr] = {}
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                out[target.id] = node.value
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple) \
                    and len(target.elts) == len(node.value.elts):
                out.update({t.id: v for t, v in zip(target.elts, node.value.elts, strict=True)
                            if isinstance(t, ast.Name)})
    return out


def string_arg(call: ast.Call, index: int) -> str | None:
    arg = call.args[index] if len(call.args) > index else None
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def inspect_node(exe: str, module: str, func_name: str, ev: Evaluator, problems: list[str]) -> NodeInfo:
    info = NodeInfo(exe, module, {})
    mod = ev.module(module)
    if mod is None:
        problems.append(f"NODE_ENTRY_POINTS: {exe}: module {module} not found under {ev.root}")
        return info
    if not any(isinstance(n, ast.FunctionDef) and n.name == func_name for n in mod.tree.body):
        problems.append(f"{mod.path}: {exe}: no function {func_name}() for the entry point")
    reads: list[tuple[str, int]] = []
    for func in (n for n in ast.walk(mod.tree) if isinstance(n, ast.FunctionDef)):
        local = local_assigns(func)
        for call in (n for n in ast.walk(func) if isinstance(n, ast.Call)):
            f = call.func
            fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if fname == "declare_parameter":
                name = string_arg(call, 0)
                if name is None:
                    problems.append(f"{mod.path}:{call.lineno}: declare_parameter needs a string literal name")
                    continue
                try:
                    info.declared[name] = ros_type(ev.value(call.args[1], mod, local)) if len(call.args) > 1 else None
                except Unknown:
                    info.declared[name] = None
            elif fname == "get_parameter" and string_arg(call, 0):
                reads.append((string_arg(call, 0), call.lineno))
            elif fname == "param" and string_arg(call, 1):
                reads.append((string_arg(call, 1), call.lineno))
            elif fname == "world_config" and isinstance(f, ast.Name):   # nodes/_ros.py: declares it, a string
                info.declared["world_config"] = "string"
            elif fname == "torch_threads" and isinstance(f, ast.Name):  # nodes/_ros.py: declares it, an integer
                info.declared["torch_threads"] = "integer"
    for name, line in reads:
        if name not in info.declared:
            problems.append(f"{mod.path}:{line}: {exe} reads parameter {name!r} but never declares it")
    return info


def entry_points(setup_py: Path, problems: list[str]) -> dict[str, tuple[str, str]]:
    """executable -> (module, function) from ``NODE_ENTRY_POINTS = ["exe = module:function", ...]``."""
    for node in ast.parse(setup_py.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "NODE_ENTRY_POINTS":
            try:
                specs = ast.literal_eval(node.value)
            except ValueError:
                problems.append(f"{setup_py}: NODE_ENTRY_POINTS must be a literal list of strings")
                return {}
            out = {}
            for spec in specs:
                exe, _, target_spec = (s.strip() for s in spec.partition("="))
                module, _, func = target_spec.partition(":")
                if not (exe and module and func):
                    problems.append(f"{setup_py}: NODE_ENTRY_POINTS entry {spec!r} is not 'exe = module:function'")
                else:
                    out[exe] = (module, func)
            return out
    problems.append(f"{setup_py}: no NODE_ENTRY_POINTS list")
    return {}


# ------------------------------------------------------------------------------------------------ launch files
@dataclass
class LaunchedNode:
    executable: str
    name: str
    namespace: str          # a literal namespace ("" for none) or PER_ARM
    line: int


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def parameter_files(tree: ast.Module, config: Path) -> list[Path]:
    """config/*.yaml files named by string constants in a launch file that hold ros__parameters sections of
    nodes (not of ros2_control controllers)."""
    names = {Path(n.value).name for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and n.value.endswith(".yaml")}
    files = [config / n for n in sorted(names)]
    return [f for f in files if f.is_file() and "ros__parameters" in f.read_text()
            and "controller_manager" not in f.read_text()]     # controllers: check_controllers


def yaml_sections(data: Any, prefix: tuple[str, ...] = ()):
    """(node full name, parameters) of a ROS 2 parameter file, nested-namespace keys joined."""
    if not isinstance(data, dict):
        return
    if "ros__parameters" in data:
        yield "/" + "/".join(p.strip("/") for p in prefix if p.strip("/")), data["ros__parameters"] or {}
    for key, value in data.items():
        if key != "ros__parameters":
            yield from yaml_sections(value, (*prefix, str(key)))


def check_parameter(where: str, node: NodeInfo, name: str, value: Any, problems: list[str], typed: bool) -> None:
    if name not in node.declared:
        problems.append(f"{where}: {node.executable} does not declare parameter {name!r} "
                        f"(declared: {', '.join(sorted(node.declared))})")
        return
    want, got = node.declared[name], ros_type(value)
    if typed and want is not None and got != want:
        problems.append(f"{where}: parameter {name!r} of {node.executable} is a {got}, declared as {want}")


@dataclass
class LaunchInfo:
    """What one launch file runs and reads, its included launch files of ours not counted."""

    launched: list[LaunchedNode] = field(default_factory=list)
    parameter_files: list[Path] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)         # file names in launch/
    spawned: list[str] = field(default_factory=list)          # controllers named to controller_manager's spawner


def parameter_dicts(item: ast.expr, func_dicts: dict[str, list[ast.Dict]]) -> list[ast.Dict]:
    """The dict literals a ``parameters=[...]`` item is: itself, or every dict literal assigned to its name."""
    if isinstance(item, ast.Dict):
        return [item]
    return func_dicts.get(item.id, []) if isinstance(item, ast.Name) else []


def check_launch(path: Path, repo: Path, nodes: dict[str, NodeInfo], problems: list[str]) -> LaunchInfo:
    """Checks one launch file's Node(...) actions of our package and what it includes."""
    info = LaunchInfo()
    src = path.read_text()
    try:
        compile(src, str(path), "exec")
    except SyntaxError as e:
        problems.append(f"{path}:{e.lineno}: does not compile: {e.msg}")
        return info
    tree = ast.parse(src)
    dicts: dict[str, list[ast.Dict]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and isinstance(node.value, ast.Dict):
            dicts.setdefault(node.targets[0].id, []).append(node.value)
    info.parameter_files = parameter_files(tree, repo / "config")
    packages: set[str] = set()
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        f = call.func
        fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        where = f"{path}:{call.lineno}"
        if fname in ("get_package_share_directory", "FindPackageShare") and string_arg(call, 0):
            packages.add(string_arg(call, 0))
        if fname != "Node":
            continue
        pkg, exe, name, ns = (keyword(call, k) for k in ("package", "executable", "name", "namespace"))
        if isinstance(pkg, ast.Constant):
            packages.add(pkg.value)
        if isinstance(pkg, ast.Constant) and pkg.value == "controller_manager" and isinstance(exe, ast.Constant) \
                and exe.value == "spawner" and isinstance(keyword(call, "arguments"), ast.List):
            first = keyword(call, "arguments").elts[0]
            info.spawned += [first.value] if isinstance(first, ast.Constant) else []
        if not (isinstance(pkg, ast.Constant) and pkg.value == PACKAGE):
            continue
        if not (isinstance(exe, ast.Constant) and isinstance(exe.value, str)):
            problems.append(f"{where}: executable must be a string literal")
            continue
        if exe.value not in nodes:
            problems.append(f"{where}: executable {exe.value!r} is not in NODE_ENTRY_POINTS ({', '.join(nodes)})")
            continue
        node_name = name.value if isinstance(name, ast.Constant) else exe.value
        namespace = "" if ns is None else ns.value.strip("/") if isinstance(ns, ast.Constant) else PER_ARM
        info.launched.append(LaunchedNode(exe.value, node_name, namespace, call.lineno))
        params = keyword(call, "parameters")
        if params is None:
            continue
        if not isinstance(params, ast.List):
            problems.append(f"{where}: parameters must be a list literal to be checked")
            continue
        for item in (d for elt in params.elts for d in parameter_dicts(elt, dicts)):
            for key in item.keys:
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    problems.append(f"{where}: parameter names must be string literals")
                else:
                    check_parameter(where, nodes[exe.value], key.value, None, problems, typed=False)
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "os.path.join"):
        last, first = call.args[-1], call.args[0]
        if not (isinstance(last, ast.Constant) and str(last.value).endswith(".launch.py")):
            continue
        external = isinstance(first, ast.Call) and string_arg(first, 0) not in (None, PACKAGE)
        if not external:        # ours: os.path.join(<codi_ros share>, "launch", NAME)
            if (repo / "launch" / last.value).is_file():
                info.includes.append(last.value)
            else:
                problems.append(f"{path}:{call.lineno}: includes {last.value}, which is not in launch/")
    declared = package_dependencies(repo / PACKAGE / "package.xml")
    for pkg in sorted(packages - {PACKAGE} - declared):
        problems.append(f"{path}: uses package {pkg!r}, which is not an exec_depend of {PACKAGE}/package.xml")
    return info


def package_dependencies(package_xml: Path) -> set[str]:
    import xml.etree.ElementTree as ET

    root = ET.parse(package_xml).getroot()
    return {e.text.strip() for tag in ("exec_depend", "depend") for e in root.iter(tag) if e.text}


def with_includes(name: str, infos: dict[str, LaunchInfo], seen: tuple[str, ...] = ()) -> LaunchInfo:
    """A launch file's nodes, parameter files and spawned controllers with those of the launch files it includes."""
    own = infos[name]
    out = LaunchInfo(list(own.launched), list(own.parameter_files), list(own.includes), list(own.spawned))
    for inc in own.includes:
        if inc in infos and inc not in seen:
            sub = with_includes(inc, infos, (*seen, name))
            out.launched += sub.launched
            out.parameter_files += [p for p in sub.parameter_files if p not in out.parameter_files]
            out.spawned += sub.spawned
    return out


def check_parameter_files(infos: dict[str, LaunchInfo], nodes: dict[str, NodeInfo], arms: list[str],
                          problems: list[str]) -> None:
    """Each section of each parameter file names a node that some launch file reading the file runs."""
    files = sorted({p for i in infos.values() for p in i.parameter_files})
    for yaml_path in files:
        users = [with_includes(n, infos) for n in infos if yaml_path in with_includes(n, infos).parameter_files]
        launched = [node for u in users for node in u.launched]
        for fqn, values in yaml_sections(yaml.safe_load(yaml_path.read_text())):
            namespace, _, node_name = fqn.strip("/").rpartition("/")
            matches = [n for n in launched if n.name == node_name and
                       (n.namespace == namespace or (n.namespace == PER_ARM and namespace in arms))]
            if not matches:
                problems.append(f"{yaml_path}: section {fqn} matches no node launched with it "
                                f"(launched: {', '.join(sorted({n.name for n in launched}))}; arms: {', '.join(arms)})")
                continue
            for pname, value in values.items():
                check_parameter(f"{yaml_path}: {fqn}", nodes[matches[0].executable], pname, value, problems, typed=True)


def arm_joints(repo: Path) -> list[str]:
    """ARM_JOINTS of codi_ros/robot/fr3.py (a pure expression of literals), evaluated."""
    tree = ast.parse((repo / PACKAGE / PACKAGE / "robot" / "fr3.py").read_text())
    expr = next(n.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
                and n.targets[0].id == "ARM_JOINTS")
    return list(eval(compile(ast.Expression(expr), "fr3.py", "eval"), {"__builtins__": {}, "tuple": tuple,
                                                                        "range": range}))


def check_controllers(repo: Path, arms: list[str], spawned: list[str], problems: list[str]) -> None:
    path = repo / "config" / "franka_controllers.yaml"
    if not path.is_file():
        problems.append(f"{path}: missing (the real arms' controllers)")
        return
    data = yaml.safe_load(path.read_text())
    manager = data.get("/**", {}).get("controller_manager", {}).get("ros__parameters", {})
    if manager.get("update_rate") != 1000:
        problems.append(f"{path}: controller_manager update_rate must be the FR3's 1000 Hz, got "
                        f"{manager.get('update_rate')}")
    for name in sorted({*spawned, "joint_state_broadcaster", "franka_robot_state_broadcaster"}):
        if not isinstance(manager.get(name), dict) or "type" not in manager[name]:
            problems.append(f"{path}: controller {name!r} (spawned) has no type under controller_manager")
    for arm in arms:
        want = [f"{arm}_{j}" for j in arm_joints(repo)]
        jtc = data.get(f"/{arm}/joint_trajectory_controller", {}).get("ros__parameters")
        if jtc is None:
            problems.append(f"{path}: no section /{arm}/joint_trajectory_controller")
            continue
        for key, value in (("joints", want), ("command_interfaces", ["position"]),
                           ("interpolation_method", "splines")):
            if jtc.get(key) != value:
                problems.append(f"{path}: /{arm}/joint_trajectory_controller {key} must be {value}, "
                                f"got {jtc.get(key)}")


def main(repo: Path) -> int:
    problems: list[str] = []
    ev = Evaluator(repo / PACKAGE)
    eps = entry_points(repo / PACKAGE / "setup.py", problems)
    nodes = {exe: inspect_node(exe, module, func, ev, problems) for exe, (module, func) in eps.items()}
    arms = [a["name"] for a in yaml.safe_load((repo / "config" / "world.yaml").read_text())["arms"]]
    launch_files = sorted((repo / "launch").glob("*.launch.py"))
    infos = {p.name: check_launch(p, repo, nodes, problems) for p in launch_files}
    for name, info in infos.items():
        problems += [f"{repo / 'launch' / name}: includes itself" for inc in info.includes if inc == name]
    check_parameter_files(infos, nodes, arms, problems)
    check_controllers(repo, arms, [c for i in infos.values() for c in i.spawned], problems)
    counts = {n: len(with_includes(n, infos).launched) for n in infos}
    for p in problems:
        print(f"ERROR {p}")
    declared = [t for n in nodes.values() for t in n.declared.values()]
    print(f"check_ros_static: {len(nodes)} node executables ({len(declared)} parameters, "
          f"{declared.count(None)} of unknown type), {len(launch_files)} launch files "
          f"({', '.join(f'{k}: {v} nodes' for k, v in counts.items())}; nodes of ours, with what they include), "
          f"{len(arms)} arms' controllers, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]))
