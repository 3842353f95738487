"""Cube pose from the ArUco markers on its faces, seen by one calibrated camera (OpenCV >= 4.7, no ROS).

The cube carries one marker per face, centred, each with its own id (:class:`CubeMarkerLayout`).
Every detected marker gives the two planar pose candidates of IPPE (``solvePnPGeneric`` with
``SOLVEPNP_IPPE_SQUARE``): the true pose and its mirror image ("flip"), which fit one marker's
corners almost equally well when the marker faces the camera (single-marker poses were more than 10 deg
off in about 18 % of simulated views).
Each candidate is turned into a cube pose and scored on the corners of *all* detected markers, so a
second visible face rules the flip out; the best hypothesis is then refined on all corners (LM).
With a single marker the lower-error candidate is kept and the result is flagged ``ambiguous`` (on
synthetic near-frontal views its rotation error is ~2 deg median, up to ~10 deg), so that the
fusion trusts it less than a multi-face view.

Conventions: OpenCV camera (optical) frame, x right, y down, z forward; marker frame x right,
y up, z out of the face (OpenCV's IPPE_SQUARE corner order: top-left, top-right, bottom-right,
bottom-left); poses are 4x4 homogeneous transforms ``T_a_b`` mapping b-coordinates to a.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Face normals in the cube frame and, for each, the direction that is "up" in the marker image.
# The marker's x axis is up x normal, so (x, up, normal) is right-handed.
FACES: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("+x", (1, 0, 0), (0, 0, 1)), ("-x", (-1, 0, 0), (0, 0, 1)),
    ("+y", (0, 1, 0), (0, 0, 1)), ("-y", (0, -1, 0), (0, 0, 1)),
    ("+z", (0, 0, 1), (0, 1, 0)), ("-z", (0, 0, -1), (0, 1, 0)),
)


class PerceptionError(ValueError):
    """Bad input to the perception code (image, intrinsics, layout)."""


def make_transform(rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rot, pos
    return T


def invert(T: np.ndarray) -> np.ndarray:
    R, p = T[:3, :3], T[:3, 3]
    return make_transform(R.T, -R.T @ p)


def rotation_angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Angle (rad) of the rotation taking Ra to Rb."""
    c = (np.trace(Ra.T @ Rb) - 1.0) / 2.0
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


@dataclass(frozen=True)
class CubeMarkerLayout:
    """Which marker sits on which face, and sizes (m). ``marker_size`` is the black square's side."""

    cube_size: float = 0.05
    marker_size: float = 0.04
    dictionary: str = "DICT_4X4_50"
    face_ids: tuple[int, ...] = (0, 1, 2, 3, 4, 5)   # ids on the faces +x, -x, +y, -y, +z, -z

    def __post_init__(self) -> None:
        if not 0 < self.marker_size < self.cube_size:
            raise PerceptionError(f"marker_size must be in (0, cube_size={self.cube_size}), got {self.marker_size}")
        if len(self.face_ids) != 6 or len(set(self.face_ids)) != 6:
            raise PerceptionError(f"face_ids needs 6 distinct marker ids, got {self.face_ids}")
        if not hasattr(cv2.aruco, self.dictionary):
            raise PerceptionError(f"unknown ArUco dictionary {self.dictionary!r}")

    def aruco_dictionary(self) -> cv2.aruco.Dictionary:
        return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))

    def marker_in_cube(self, marker_id: int) -> np.ndarray:
        """T_cube_marker of the marker with this id (centred on its face, z = outward normal)."""
        _, normal, up = FACES[self.face_ids.index(marker_id)]
        n, y = np.array(normal, dtype=float), np.array(up, dtype=float)
        return make_transform(np.column_stack([np.cross(y, n), y, n]), n * self.cube_size / 2)

    def marker_corners(self, size: float | None = None) -> np.ndarray:
        """(4, 3) corners in the marker frame, OpenCV IPPE_SQUARE order (TL, TR, BR, BL)."""
        h = (self.marker_size if size is None else size) / 2
        return np.array([[-h, h, 0.0], [h, h, 0.0], [h, -h, 0.0], [-h, -h, 0.0]])

    def corners_in_cube(self, marker_id: int, size: float | None = None) -> np.ndarray:
        """(4, 3) corners of the marker (or of a centred square of side ``size``) in the cube frame."""
        T = self.marker_in_cube(marker_id)
        return self.marker_corners(size) @ T[:3, :3].T + T[:3, 3]

    def face_image(self, marker_id: int, pixels: int = 400) -> np.ndarray:
        """(pixels, pixels) uint8 image of a whole face: the marker centred on white, top row = marker top.

        Print it at ``cube_size`` per side, or use it as the simulated cube's face texture.
        """
        face = np.full((pixels, pixels), 255, dtype=np.uint8)
        m = int(round(pixels * self.marker_size / self.cube_size))
        o = (pixels - m) // 2
        face[o:o + m, o:o + m] = cv2.aruco.generateImageMarker(self.aruco_dictionary(), marker_id, m)
        return face


# A MuJoCo cube texture (<texture type="cube" fileright=.. fileleft=.. fileup=.. filedown=.. filefront=..
# fileback=..>) puts its images on the faces +x, -x, +y, -y, +z, -z, each turned by these quarter turns
# (np.rot90) relative to this layout's convention; found by rendering a textured box (test_perception.py).
MUJOCO_CUBE_FACES: tuple[tuple[str, int], ...] = (
    ("right", 1), ("left", 3), ("up", 2), ("down", 0), ("front", 0), ("back", 0))


def mujoco_face_images(layout: CubeMarkerLayout, pixels: int = 256) -> dict[str, np.ndarray]:
    """The six images of a MuJoCo cube texture ({"right": ..., "back": ...}) that render as ``layout``."""
    return {name: np.ascontiguousarray(np.rot90(layout.face_image(marker_id, pixels), turns))
            for (name, turns), marker_id in zip(MUJOCO_CUBE_FACES, layout.face_ids, strict=True)}


@dataclass(frozen=True)
class MarkerDetection:
    marker_id: int
    corners: np.ndarray   # (4, 2) pixels, TL, TR, BR, BL


@dataclass(frozen=True)
class CubeObservation:
    """A cube pose seen by one camera."""

    T_cam_cube: np.ndarray          # (4, 4)
    reprojection_error: float       # RMS over all used corners, px
    marker_ids: tuple[int, ...]
    ambiguous: bool                 # a single marker: the IPPE flip could not be ruled out by geometry

    def in_world(self, T_world_cam: np.ndarray) -> np.ndarray:
        return T_world_cam @ self.T_cam_cube


def to_gray(image: np.ndarray, encoding: str) -> np.ndarray:
    """A uint8 grayscale view of an image given as (H, W[, C]) with a ROS encoding name."""
    enc = encoding.lower()
    if image.dtype != np.uint8:
        raise PerceptionError(f"image: expected 8-bit pixels, got {image.dtype}")
    if enc in ("mono8", "8uc1"):
        return image if image.ndim == 2 else image[..., 0]
    codes = {"rgb8": cv2.COLOR_RGB2GRAY, "bgr8": cv2.COLOR_BGR2GRAY,
             "rgba8": cv2.COLOR_RGBA2GRAY, "bgra8": cv2.COLOR_BGRA2GRAY}
    if enc not in codes:
        raise PerceptionError(f"image encoding {encoding!r} not supported (use mono8, rgb8, bgr8, rgba8 or bgra8)")
    return cv2.cvtColor(image, codes[enc])


class CubePoseEstimator:
    """Detects the cube's markers and estimates its pose; see the module docstring."""

    def __init__(self, layout: CubeMarkerLayout, max_reprojection_error: float = 2.0):
        self.layout = layout
        self.max_reprojection_error = max_reprojection_error
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        # Markers on adjacent faces are only 2 x (cube - marker) / 2 apart: OpenCV 5's default minimum
        # distance (0.125 of the perimeter) would drop one of them as a duplicate.
        params.minMarkerDistanceRate = 0.05
        self.detector = cv2.aruco.ArucoDetector(layout.aruco_dictionary(), params)

    def detect(self, gray: np.ndarray) -> list[MarkerDetection]:
        """The cube's markers in a grayscale image (markers with other ids are ignored)."""
        corners, ids, _rejected = self.detector.detectMarkers(gray)
        if ids is None:
            return []
        ids = [int(i) for i in ids.ravel()]
        # An id seen twice (a second cube, a reflection) cannot be attributed: leave it out.
        return [MarkerDetection(i, c.reshape(4, 2).astype(float))
                for c, i in zip(corners, ids, strict=True) if i in self.layout.face_ids and ids.count(i) == 1]

    def estimate(self, gray: np.ndarray, K: np.ndarray, dist: np.ndarray) -> CubeObservation | None:
        """Cube pose in the camera frame, or None when no marker is seen or the fit is too poor."""
        K, dist = np.asarray(K, dtype=float), np.asarray(dist, dtype=float).ravel()
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise PerceptionError(f"camera matrix K must be a finite 3x3 with positive focal lengths, got {K}")
        markers = self.detect(gray)
        if not markers:
            return None
        hypotheses = [h for m in markers for h in self._marker_hypotheses(m, K, dist)]
        best = min(hypotheses, key=lambda T: self._rms(T, markers, K, dist))
        T = self._refine(best, markers, K, dist)
        err = self._rms(T, markers, K, dist)
        if not np.isfinite(err) or err > self.max_reprojection_error:
            return None
        return CubeObservation(T, err, tuple(m.marker_id for m in markers), ambiguous=len(markers) == 1)

    def _points(self, markers: list[MarkerDetection]) -> tuple[np.ndarray, np.ndarray]:
        """Marker corners in the cube frame (4M, 3) and in the image (4M, 2)."""
        return (np.concatenate([self.layout.corners_in_cube(m.marker_id) for m in markers]),
                np.concatenate([m.corners for m in markers]))

    def _marker_hypotheses(self, m: MarkerDetection, K: np.ndarray, dist: np.ndarray) -> list[np.ndarray]:
        """Both IPPE solutions for one marker, as cube poses T_cam_cube."""
        n, rvecs, tvecs, _errs = cv2.solvePnPGeneric(self.layout.marker_corners(), m.corners, K, dist,
                                                      flags=cv2.SOLVEPNP_IPPE_SQUARE)
        T_marker_cube = invert(self.layout.marker_in_cube(m.marker_id))
        return [make_transform(cv2.Rodrigues(r)[0], t.ravel()) @ T_marker_cube
                for r, t in zip(rvecs[:n], tvecs[:n], strict=True)]

    def _rms(self, T: np.ndarray, markers: list[MarkerDetection], K: np.ndarray, dist: np.ndarray) -> float:
        """RMS corner reprojection error (px) of the markers under the cube pose T_cam_cube."""
        obj, img = self._points(markers)
        pts_cam = obj @ T[:3, :3].T + T[:3, 3]
        if np.any(pts_cam[:, 2] <= 0):
            return float("inf")
        proj, _ = cv2.projectPoints(obj, cv2.Rodrigues(T[:3, :3])[0], T[:3, 3], K, dist)
        return float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img) ** 2, axis=1))))

    def _refine(self, T: np.ndarray, markers: list[MarkerDetection], K: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """Levenberg-Marquardt on all corners of ``markers``, from the pose T."""
        obj, img = self._points(markers)
        rvec, tvec = cv2.Rodrigues(T[:3, :3])[0], T[:3, 3].reshape(3, 1).copy()
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, dist, rvec, tvec)
        return make_transform(cv2.Rodrigues(rvec)[0], tvec.ravel())

