# Fixtures for tests/test_io.c: small files written by numpy and Python's zipfile, read back by our readers.
# Regenerate (on purpose only) from the repository root with:  /usr/bin/python3 tests/ref/make_io_fixtures.py
# Values follow simple formulas (arange) that test_io.c recomputes; the half-precision edges are compared
# against numpy's own float16 -> float32 conversion, stored alongside.
import json
import os
import struct
import zipfile

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "io")
os.makedirs(OUT, exist_ok=True)


def path(name):
    return os.path.join(OUT, name)


# C-ordered float32, values 0.5 * i - 1
np.save(path("f32_2x3.npy"), (np.arange(6, dtype="<f4") * 0.5 - 1).reshape(2, 3))
# Fortran-ordered int32 (2, 3, 4) with values i (in C order)
np.save(path("fortran_i4.npy"), np.asfortranarray(np.arange(24, dtype="<i4").reshape(2, 3, 4)))
# Big-endian float32, values i + 0.25
np.save(path("be_f4.npy"), np.arange(5, dtype=">f4") + np.float32(0.25))
# Big-endian int64, values -i * 1000
np.save(path("be_i8.npy"), -np.arange(3, dtype=">i8") * 1000)
# Format version 2.0 header, float64 values i / 4
with open(path("v2_f8.npy"), "wb") as f:
    np.lib.format.write_array(f, np.arange(4, dtype="<f8") / 4, version=(2, 0))
# A 0-d float64 scalar
np.save(path("scalar_f8.npy"), np.array(3.5, dtype="<f8"))
# float16 edge values and numpy's float32 conversion of them
edges = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 2.0**-24, 2.0**-14 - 2.0**-24, 2.0**-14,
                  np.inf, -np.inf, np.nan, 0.1], dtype="<f2")
np.save(path("half_edges.npy"), edges)
np.save(path("half_edges_f32.npy"), edges.astype("<f4"))

# npz: stored (np.savez) with several dtypes, and deflated (np.savez_compressed)
np.savez(path("stored.npz"), u8=np.arange(4, dtype="|u1"), b1=np.array([True, False, True]),
         i8=np.arange(3, dtype="<i8") - 1)
np.savez_compressed(path("compressed.npz"), a=np.zeros((4, 8), dtype="<f4") + 1.5,
                    b=np.arange(10, dtype="<i2"))

# A zip written by Python's zipfile with an archive comment (the EOCD search must skip it) and a
# member whose local header carries a zip64 extra field and a different extra length.
with zipfile.ZipFile(path("comment.zip"), "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.comment = b"PK\x05\x06 looks like an end record but is only a comment"
    z.writestr("hello.txt", b"hello hello hello hello\n")
    with z.open("zip64.bin", "w", force_zip64=True) as f:
        f.write(bytes(range(200)))

# safetensors written by hand (no safetensors package here), following the format description:
# unordered keys, __metadata__ last, a BF16 tensor (top half of float32 1.0, -2.0, 0.5) and an F16 one.
bf16 = (np.array([1.0, -2.0, 0.5], dtype="<f4").view("<u4") >> 16).astype("<u2").tobytes()
f16 = np.array([[1.0, 0.5], [-1.0, 2.0]], dtype="<f2").tobytes()
header = {
    "half": {"dtype": "F16", "shape": [2, 2], "data_offsets": [6, 14]},
    "brain": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
    "__metadata__": {"format": "pt", "note": "quote \" and \\ backslash"},
}
text = json.dumps(header).encode()
with open(path("python.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + bf16 + f16)
