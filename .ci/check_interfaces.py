"""Parse codi_msgs' msg/*.msg and srv/*.srv files with ROS 2's own parser (rosidl_adapter).

Run by Debian's /usr/bin/python3 (packages python3-rosidl, python3-catkin-pkg). Checks that every
file parses and that every type it names is one of codi_msgs' own messages or comes from a
package that codi_msgs/package.xml depends on. Usage: check_interfaces.py <path to codi_msgs>
"""

import sys
from pathlib import Path

from catkin_pkg.package import parse_package
from rosidl_adapter.parser import parse_message_file, parse_service_file


def main(pkg_dir: Path) -> int:
    manifest = parse_package(str(pkg_dir / "package.xml"))
    deps = {d.name for d in manifest.build_depends + manifest.exec_depends}
    own_msgs = {f.stem for f in (pkg_dir / "msg").glob("*.msg")}
    files = sorted((pkg_dir / "msg").glob("*.msg")) + sorted((pkg_dir / "srv").glob("*.srv"))
    errors = []
    for f in files:
        try:
            if f.suffix == ".msg":
                specs = [parse_message_file(manifest.name, str(f))]
            else:
                srv = parse_service_file(manifest.name, str(f))
                specs = [srv.request, srv.response]
        except Exception as exc:  # the parser raises several unrelated exception types
            errors.append(f"{f}: {type(exc).__name__}: {exc}")
            continue
        for field in (field for spec in specs for field in spec.fields):
            t = field.type
            if t.is_primitive_type():
                continue
            if t.pkg_name == manifest.name and t.type not in own_msgs:
                errors.append(f"{f}: field {field.name}: no msg/{t.type}.msg in {manifest.name}")
            elif t.pkg_name != manifest.name and t.pkg_name not in deps:
                errors.append(f"{f}: field {field.name}: {t.pkg_name} is not a dependency in package.xml")
    for e in errors:
        print(f"ERROR {e}")
    print(f"{manifest.name}: {len(files)} interface files parsed, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
