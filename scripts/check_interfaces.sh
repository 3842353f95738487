#!/usr/bin/env bash
# Translate codi_msgs' msg/*.msg and srv/*.srv to .idl with ROS 2's rosidl_adapter (the first step of
# rosidl_generate_interfaces) and parse every .idl with rosidl_parser, using Debian's packages
# python3-rosidl and rosidl-tools (for /usr/bin/python3). Also checks that every type the files name
# exists: codi_msgs' own messages, and builtin_interfaces / std_msgs / geometry_msgs messages by the
# names those packages have in Humble and Jazzy (Debian does not package their definitions).
# Exit status: 0 all parsed (or skipped: the tools are missing and cannot be installed), 1 otherwise.
# Usage: scripts/check_interfaces.sh [path/to/codi_msgs]; CODI_APT_INSTALL=0 never runs apt-get.
set -euo pipefail
pkg_dir=$(cd "${1:-$(dirname "$0")/../codi_msgs}" && pwd)
SYS_PY=/usr/bin/python3

have_tools() { command -v rosidl >/dev/null && [[ -x $SYS_PY ]] && $SYS_PY -c "import rosidl_adapter, rosidl_parser" 2>/dev/null; }

if ! have_tools; then
  policy=$(apt-cache policy python3-rosidl rosidl-tools 2>/dev/null || true)
  if [[ ${CODI_APT_INSTALL:-1} != 0 && $(id -u) == 0 ]] && command -v apt-get >/dev/null &&
      [[ $policy == *"Candidate: "[0-9]* ]]; then
    echo "check_interfaces: installing python3-rosidl rosidl-tools with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
      python3-rosidl rosidl-tools >/dev/null || echo "check_interfaces: apt-get install failed"
  fi
  if ! have_tools; then
    echo "check_interfaces: SKIPPED: Debian's rosidl tools are not available and could not be installed" \
      "(apt-get install python3-rosidl rosidl-tools, as root, on Debian/Ubuntu)"
    exit 0
  fi
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mapfile -t files < <(cd "$pkg_dir" && ls msg/*.msg srv/*.srv 2>/dev/null)
if [[ ${#files[@]} == 0 ]]; then
  echo "check_interfaces: FAILED: no msg/*.msg or srv/*.srv in $pkg_dir"
  exit 1
fi
if ! rosidl translate --to idl --output-path "$out" codi_msgs "${files[@]/#/$pkg_dir:}" >"$out/translate.log" 2>&1; then
  tail -n 3 "$out/translate.log"
  echo "check_interfaces: FAILED: rosidl translate (.msg/.srv -> .idl) rejected a file (error above)"
  exit 1
fi

$SYS_PY - "$out" "${files[@]}" <<'EOF'
import sys
from pathlib import Path

from rosidl_parser.definition import AbstractNestedType, IdlLocator, Message, NamespacedType, Service
from rosidl_parser.parser import parse_idl_file

KNOWN = {  # message names of these packages in ROS 2 Humble and Jazzy
    "builtin_interfaces": {"Time", "Duration"},
    "std_msgs": {"Bool", "Byte", "ByteMultiArray", "Char", "ColorRGBA", "Empty", "Float32", "Float32MultiArray",
                 "Float64", "Float64MultiArray", "Header", "Int16", "Int16MultiArray", "Int32", "Int32MultiArray",
                 "Int64", "Int64MultiArray", "Int8", "Int8MultiArray", "MultiArrayDimension", "MultiArrayLayout",
                 "String", "UInt16", "UInt16MultiArray", "UInt32", "UInt32MultiArray", "UInt64", "UInt64MultiArray",
                 "UInt8", "UInt8MultiArray"},
    "geometry_msgs": {"Accel", "AccelStamped", "AccelWithCovariance", "AccelWithCovarianceStamped", "Inertia",
                      "InertiaStamped", "Point", "Point32", "PointStamped", "Polygon", "PolygonStamped", "Pose",
                      "Pose2D", "PoseArray", "PoseStamped", "PoseWithCovariance", "PoseWithCovarianceStamped",
                      "Quaternion", "QuaternionStamped", "Transform", "TransformStamped", "Twist", "TwistStamped",
                      "TwistWithCovariance", "TwistWithCovarianceStamped", "Vector3", "Vector3Stamped", "Wrench",
                      "WrenchStamped"},
}
out, files = Path(sys.argv[1]), sys.argv[2:]
own = {Path(f).stem for f in files if f.endswith(".msg")}
errors, structs = [], 0
for f in files:
    idl = Path(f).with_suffix(".idl")
    try:
        content = parse_idl_file(IdlLocator(out, idl)).content
    except Exception as e:  # the parser raises lark and assertion errors alike
        errors.append(f"{f}: {type(e).__name__}: {e}")
        continue
    for element in content.elements:
        if isinstance(element, Message):
            messages = [element]
        elif isinstance(element, Service):
            messages = [element.request_message, element.response_message]
        else:
            continue
        for msg in messages:
            structs += 1
            for member in msg.structure.members:
                t = member.type.value_type if isinstance(member.type, AbstractNestedType) else member.type
                if not isinstance(t, NamespacedType):
                    continue
                pkg, name = t.namespaces[0], t.name
                if (pkg == "codi_msgs" and name not in own) or (pkg in KNOWN and name not in KNOWN[pkg]):
                    errors.append(f"{f}: {member.name}: no message {pkg}/{name}")
                elif pkg not in KNOWN and pkg != "codi_msgs":
                    errors.append(f"{f}: {member.name}: {pkg}/{name}: package not checked here; add it to KNOWN")
for e in errors:
    print(f"ERROR {e}")
print(f"check_interfaces: {len(files)} files -> .idl -> {structs} structures parsed, field types checked, "
      f"{len(errors)} errors")
sys.exit(1 if errors else 0)
EOF
