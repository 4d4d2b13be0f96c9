# gen_numpy.py writes the .npy fixtures in this folder with NumPy itself, so
# that the tests read files that numpy.save made, not files we made.
# Run it from this folder: python3 gen_numpy.py (NumPy 1.24.2 made the
# committed files; Debian bookworm's python3-numpy).
import numpy as np
from numpy.lib import format as npformat

def save(name, arr, version=None):
    with open(name, "wb") as f:
        if version is None:
            np.save(f, arr)
        else:
            npformat.write_array(f, arr, version=version)

save("f4_2x3.npy", (np.arange(6, dtype="<f4") / 4).reshape(2, 3))
save("f2_3.npy", np.array([1, -2, 0.5], dtype="<f2"))
save("f8_scalar.npy", np.array(3.5, dtype="<f8"))
save("i8_1x8.npy", np.arange(8, dtype="<i8").reshape(1, 8) - 3)
save("i4_2x2.npy", np.array([[-2147483648, -1], [0, 2147483647]], dtype="<i4"))
save("i1_4.npy", np.array([-128, -1, 0, 127], dtype="|i1"))
save("u1_4.npy", np.array([0, 1, 128, 255], dtype="|u1"))
save("i2_2.npy", np.array([-32768, 32767], dtype="<i2"))
save("u2_2.npy", np.array([0, 65535], dtype="<u2"))
save("u4_2.npy", np.array([0, 4294967295], dtype="<u4"))
save("u8_2.npy", np.array([0, 18446744073709551615], dtype="<u8"))
save("b1_3.npy", np.array([True, False, True]))
save("f4_0x3.npy", np.zeros((0, 3), dtype="<f4"))
save("f4_v2.npy", np.array([1.5, -1.5], dtype="<f4"), version=(2, 0))
save("i8_v3.npy", np.array([[7]], dtype="<i8"), version=(3, 0))
# Arrays that the package must reject.
save("fortran_f4.npy", np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)))
save("bigendian_f4.npy", np.array([1, 2], dtype=">f4"))
save("c8.npy", np.array([1 + 2j], dtype="<c8"))
save("structured.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))
