"""Defacing of head MRI volumes: pydeface's template and face mask, registered with SimpleITK.

Invariant: a volume is either returned with every voxel under the registered face mask
set to zero, or refused with `DefacingFailed` — never returned with its face. The
result is reproducible: fixed metric sampling seed, one registration thread, and the
transform rounded before the mask is resampled.

How: pydeface's whole-head template (`mean_reg2mean.nii.gz`) is registered to the
subject (rigid, then affine, Mattes mutual information, so any MR contrast works), as
pydeface does with FSL FLIRT; its face mask (`facemask.nii.gz`: 1 keep, 0 face) is
resampled through that transform into the subject's grid. No FSL is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import IngestError

SitkImage = Any
SitkTransform = Any
"""SimpleITK's own annotations are partial: its objects are handled as `Any`."""

COARSE_MM = 2.0
"""Registration runs on 2 mm grids: enough for a face mask, a few seconds per volume."""
MIN_HEAD_EXTENT_MM = 120.0
"""A volume smaller than this along any axis does not hold a whole head: the face
cannot be located on it, so it is refused rather than passed un-defaced."""
SCALE_RANGE = (0.75, 1.33)
"""Plausible head-size ratios subject/template; a transform outside means the
registration failed."""
SAMPLING_SEED = 20161212
"""Fixed seed of the metric's random sampling, for reproducible masks."""
_TEMPLATE = "data/mean_reg2mean.nii.gz"
_FACE_MASK = "data/facemask.nii.gz"


class DefacingFailed(Exception):
    """The face could not be located on this volume; it must not be released."""


@dataclass(frozen=True)
class _Grid:
    image: SitkImage
    coarse: SitkImage


class Defacer:
    """Finds the face of head volumes and zeroes it; load once, use for many volumes."""

    def __init__(self) -> None:
        try:
            import nibabel  # noqa: PLC0415 - only when defacing is asked for
            import SimpleITK  # noqa: PLC0415
        except ImportError as exc:
            raise IngestError(
                f"defacing is not available: {exc.name} is not installed "
                "(install the 'pydeface' and 'SimpleITK' packages on the ingest host)"
            ) from exc
        self._sitk: Any = SimpleITK
        nib: Any = nibabel
        try:
            data = resources.files("pydeface")
            with (
                resources.as_file(data / _TEMPLATE) as template_path,
                resources.as_file(data / _FACE_MASK) as mask_path,
            ):
                template = nib.load(template_path)
                mask = nib.load(mask_path)
                template_array = np.asarray(template.dataobj, dtype=np.float32)
                mask_array = np.asarray(mask.dataobj, dtype=np.float32)
        except (ModuleNotFoundError, FileNotFoundError) as exc:
            raise IngestError(
                "defacing is not available: pydeface's template and face mask are not "
                "installed (install the 'pydeface' package on the ingest host)"
            ) from exc
        template_image = self._image(template_array, template.affine)
        self._template = _Grid(template_image, self._coarse(template_image))
        self._mask = self._image(mask_array, mask.affine)
        self.tools = {
            "SimpleITK": version("SimpleITK"),
            "pydeface (template, face mask)": version("pydeface"),
        }

    def face(self, volume: NDArray[Any], affine: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which voxels of a 3-D volume (or the mean of a 4-D one) lie on the face.

        Raises `DefacingFailed` when the volume cannot hold a whole head or the
        registration gives an implausible head.
        """
        if volume.ndim == 4:
            volume = volume.mean(axis=3, dtype=np.float64)
        if volume.ndim != 3:
            raise DefacingFailed(f"cannot deface a {volume.ndim}-D volume (3-D or 4-D only)")
        extent = np.linalg.norm(affine[:3, :3], axis=0) * np.asarray(volume.shape)
        if float(extent.min()) < MIN_HEAD_EXTENT_MM:
            raise DefacingFailed(
                f"the volume spans {float(extent.min()):.0f} mm along one axis, less than "
                f"a whole head ({MIN_HEAD_EXTENT_MM:.0f} mm), so its face cannot be located"
            )
        subject_image = self._image(volume.astype(np.float32), affine)
        subject = _Grid(subject_image, self._coarse(subject_image))
        transform = self._register(subject)
        sitk = self._sitk
        warped = sitk.Resample(
            self._mask, subject.image, transform, sitk.sitkLinear, 1.0, sitk.sitkFloat32
        )
        keep = np.transpose(sitk.GetArrayFromImage(warped), (2, 1, 0))
        face: NDArray[np.bool_] = keep < 0.5
        return face

    # -- registration ------------------------------------------------------------------

    def _register(self, subject: _Grid) -> SitkTransform:
        """Template → subject: rigid from the centres of mass, then affine; rounded."""
        sitk = self._sitk
        fixed, moving = subject.coarse, self._template.coarse
        rigid = sitk.CenteredTransformInitializer(
            fixed,
            moving,
            sitk.Euler3DTransform(),
            sitk.CenteredTransformInitializerFilter.MOMENTS,
        )
        method = self._method([4, 2, 1], [4.0, 2.0, 0.0], 2.0, None)
        method.SetInitialTransform(rigid, inPlace=True)
        method.Execute(fixed, moving)
        affine = sitk.AffineTransform(3)
        affine.SetCenter(rigid.GetCenter())
        method = self._method([2, 1], [2.0, 0.0], 1.0, rigid)
        method.SetInitialTransform(affine, inPlace=True)
        method.Execute(fixed, moving)
        return self._flatten(sitk.CompositeTransform([rigid, affine]))

    def _method(self, shrink: list[int], sigmas: list[float], rate: float, initial: Any) -> Any:
        sitk = self._sitk
        method = sitk.ImageRegistrationMethod()
        method.SetNumberOfThreads(1)  # the metric's sums depend on the thread split
        method.SetMetricAsMattesMutualInformation(32)
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(0.1, SAMPLING_SEED)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=rate, minStep=1e-3, numberOfIterations=200, relaxationFactor=0.5
        )
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetShrinkFactorsPerLevel(shrink)
        method.SetSmoothingSigmasPerLevel(sigmas)
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        if initial is not None:
            method.SetMovingInitialTransform(initial)
        return method

    def _flatten(self, composite: Any) -> SitkTransform:
        """One affine transform, rounded, checked for a plausible head size."""
        sitk = self._sitk
        origin = np.asarray(composite.TransformPoint((0.0, 0.0, 0.0)))
        columns = [
            np.asarray(composite.TransformPoint(tuple(float(v) for v in axis))) - origin
            for axis in np.eye(3)
        ]
        matrix = np.round(np.column_stack(columns), 6)
        translation = np.round(origin, 3)
        scales = np.linalg.svd(matrix, compute_uv=False)
        low, high = SCALE_RANGE
        if not (low <= float(scales.min()) and float(scales.max()) <= high):
            raise DefacingFailed(
                "registration to the head template failed (implausible head size), so "
                "the face cannot be located"
            )
        flat = sitk.AffineTransform(3)
        flat.SetMatrix(tuple(float(v) for v in matrix.ravel()))
        flat.SetTranslation(tuple(float(v) for v in translation))
        return flat

    # -- images ----------------------------------------------------------------------

    def _image(self, array: NDArray[np.float32], affine: NDArray[np.float64]) -> SitkImage:
        """A SimpleITK image (LPS) of a NIfTI-ordered array with its RAS affine."""
        sitk = self._sitk
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
        linear = lps[:3, :3]
        spacing = np.linalg.norm(linear, axis=0)
        if not np.all(spacing > 0):
            raise DefacingFailed("the volume's affine has a zero voxel size")
        u, _, vt = np.linalg.svd(linear / spacing)  # nearest rotation: ITK takes no shear
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
        image.SetSpacing(tuple(float(s) for s in spacing))
        image.SetOrigin(tuple(float(o) for o in lps[:3, 3]))
        image.SetDirection(tuple(float(d) for d in (u @ vt).ravel()))
        return image

    def _coarse(self, image: SitkImage) -> SitkImage:
        """The image smoothed and resampled to `COARSE_MM` voxels (if finer)."""
        sitk = self._sitk
        spacing = image.GetSpacing()
        if min(spacing) >= COARSE_MM:
            return image
        smooth = sitk.SmoothingRecursiveGaussian(image, COARSE_MM / 2)
        size = [
            max(1, round(n * s / COARSE_MM)) for n, s in zip(image.GetSize(), spacing, strict=True)
        ]
        return sitk.Resample(
            smooth,
            size,
            sitk.Transform(),
            sitk.sitkLinear,
            image.GetOrigin(),
            (COARSE_MM,) * 3,
            image.GetDirection(),
            0.0,
            sitk.sitkFloat32,
        )
