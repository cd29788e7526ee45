"""Makes the outline fixture in tests/fixtures/outlines/ from the two brain MRI volumes and their tumour
label maps shipped in PyRadiomics's source distribution (BSD-3-Clause licence, see the fixture's README).

Run once, in a scratch virtual environment outside the repository (the results are committed):

    python3 -m venv nrrdenv && nrrdenv/bin/pip install pynrrd==1.1.3 numpy==2.4.6 pillow==13.0.0
    # the source distribution itself (pip download would try to build it; fetch the file by name):
    #   pyradiomics-3.1.0.tar.gz, 34461233 bytes,
    #   sha256 24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4
    nrrdenv/bin/python scripts/make-outline-fixtures.py pyradiomics-3.1.0.tar.gz tests/fixtures/outlines

What it writes (a class-folder test set with a parallel mask tree, `data.masks.layout: tree`):

    Testing/tumor/<volume>_z<NN>.png        axial slices with tumour voxels (all 10 of them)
    Testing/no_tumor/<volume>_z<NN>.png     axial slices without (a fixed list below)
    masks/Testing/<class>/<volume>_z<NN>.png  the label map's slice: 255 = tumour, 0 = not (all zero
                                            for the no_tumor slices)

Slices are the volumes' 256 x 256 planes halved to 128 x 128 (1.5625 mm pixels; the fixture stays
small): row = the volume's second index, column = its first; each 2 x 2 block becomes one pixel, the
mean for the grey image, tumour for the mask when at least 2 of its 4 voxels are. Grey values: each
volume's intensities clipped at its own 99.5th percentile and scaled linearly to 0..255 (8-bit PNG).
"""
import hashlib
import io
import os
import sys
import tarfile

import nrrd
import numpy as np
from PIL import Image

SDIST_SHA256 = "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4"
VOLUMES = ["brain1", "brain2"]
# Slices without tumour voxels, spread over each volume away from the tumour (brain1's tumour is on
# z 11-17, brain2's on z 8-10).
NO_TUMOR = {"brain1": [4, 7, 20, 22], "brain2": [4, 13, 16, 19]}


def read_nrrd(tar, name):
    member = tar.extractfile(f"pyradiomics-3.1.0/data/{name}.nrrd")
    f = io.BytesIO(member.read())
    header = nrrd.read_header(f)
    data = nrrd.read_data(header, f)  # index order (x, y, z)
    return data, header


def halve(plane):
    """The mean of each 2 x 2 block."""
    h, w = plane.shape
    return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def main(sdist, out):
    digest = hashlib.sha256(open(sdist, "rb").read()).hexdigest()
    if digest != SDIST_SHA256:
        sys.exit(f"{sdist}: sha256 {digest}, expected {SDIST_SHA256}")
    with tarfile.open(sdist) as tar:
        for vol in VOLUMES:
            image, _ = read_nrrd(tar, f"{vol}_image")
            label, _ = read_nrrd(tar, f"{vol}_label")
            assert image.shape == label.shape, (vol, image.shape, label.shape)
            assert set(np.unique(label)) <= {0, 1}, np.unique(label)
            top = float(np.percentile(image, 99.5))
            grey = np.clip(image.astype(np.float64) / top, 0.0, 1.0) * 255.0
            tumour = [z for z in range(label.shape[2]) if label[:, :, z].any()]
            for z in tumour + NO_TUMOR[vol]:
                cls = "tumor" if z in tumour else "no_tumor"
                assert (cls == "tumor") == bool(label[:, :, z].any())
                name = f"{vol}_z{z:02d}.png"
                g = np.rint(halve(grey[:, :, z].T)).astype(np.uint8)
                m = (halve((label[:, :, z].T > 0).astype(np.float64)) >= 0.5).astype(np.uint8) * 255
                for sub, plane in [
                    (os.path.join("Testing", cls), g),
                    (os.path.join("masks", "Testing", cls), m),
                ]:
                    d = os.path.join(out, sub)
                    os.makedirs(d, exist_ok=True)
                    Image.fromarray(np.ascontiguousarray(plane), mode="L").save(
                        os.path.join(d, name), optimize=True
                    )
                print(vol, z, cls, int(label[:, :, z].sum()), "tumour voxels,", int((m > 0).sum()), "mask pixels")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
