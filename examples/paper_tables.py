"""The paper's Tables 2-6, as printed (Pointing Game accuracies on the real data sets).

Typed from the paper (NormGrad for medical image quality assessment; LVOT: cardiac MRI,
224 px, ResNet-50 and EfficientNet-B0; Object-CXR: chest radiographs, 600 px, ResNet-34 and
EfficientNet-B0), for ``reproduction.py`` to set beside this library's runs. Method names
are the protocol example's. A pair is (mean, std) over the paper's repetitions.
"""

from __future__ import annotations

from typing import TypeVar

_Row = TypeVar("_Row")

METHODS = (
    "Input x Gradient",
    "Guided Backprop",
    "Guided Grad-CAM",
    "Grad-CAM",
    "NormGrad Scaling",
    "NormGrad Scaling (M)",
    "NormGrad Conv1x1",
    "NormGrad Conv1x1 (M)",
    "NormGrad Conv3x3",
    "NormGrad Conv3x3 (M)",
)


def _rows(*values: _Row) -> dict[str, _Row]:
    """The methods' rows, in the paper's order."""
    return dict(zip(METHODS, values, strict=True))


# Table 2: unsmoothed and smoothed, (LVOT unsmoothed, LVOT smoothed, Object-CXR unsmoothed,
# Object-CXR smoothed); one model per data set, single values
TABLE_2 = _rows(
    (0.000, 0.098, 0.162, 0.670),
    (0.000, 0.135, 0.132, 0.648),
    (0.051, 0.319, 0.256, 0.640),
    (0.582, 0.554, 0.572, 0.546),
    (0.472, 0.468, 0.850, 0.852),
    (0.627, 0.626, 0.840, 0.838),
    (0.431, 0.430, 0.848, 0.848),
    (0.639, 0.639, 0.840, 0.838),
    (0.295, 0.292, 0.850, 0.850),
    (0.640, 0.649, 0.846, 0.846),
)

# Tables 3 (LVOT, ResNet-50) and 4 (Object-CXR, ResNet-34): semi-randomised (SR),
# fully-randomised (FR) and repeatedly trained (Repeated), each (mean, std)
Pair = tuple[float, float]
TABLE_3: dict[str, tuple[Pair, Pair, Pair]] = _rows(
    ((0.001, 0.001), (0.048, 0.015), (0.106, 0.058)),
    ((0.004, 0.002), (0.103, 0.041), (0.152, 0.075)),
    ((0.027, 0.025), (0.044, 0.057), (0.325, 0.075)),
    ((0.061, 0.104), (0.008, 0.014), (0.547, 0.020)),
    ((0.069, 0.029), (0.007, 0.002), (0.497, 0.140)),
    ((0.066, 0.038), (0.057, 0.023), (0.600, 0.054)),
    ((0.048, 0.000), (0.011, 0.016), (0.479, 0.139)),
    ((0.054, 0.011), (0.082, 0.079), (0.611, 0.051)),
    ((0.073, 0.000), (0.215, 0.041), (0.430, 0.185)),
    ((0.118, 0.006), (0.057, 0.023), (0.602, 0.061)),
)
TABLE_4: dict[str, tuple[Pair, Pair, Pair]] = _rows(
    ((0.111, 0.028), (0.185, 0.041), (0.663, 0.013)),
    ((0.091, 0.008), (0.160, 0.007), (0.640, 0.053)),
    ((0.166, 0.055), (0.200, 0.028), (0.645, 0.012)),
    ((0.200, 0.066), (0.093, 0.103), (0.545, 0.018)),
    ((0.279, 0.021), (0.126, 0.032), (0.852, 0.000)),
    ((0.320, 0.029), (0.147, 0.053), (0.843, 0.005)),
    ((0.280, 0.000), (0.153, 0.025), (0.851, 0.006)),
    ((0.325, 0.004), (0.185, 0.027), (0.839, 0.010)),
    ((0.298, 0.000), (0.153, 0.017), (0.853, 0.003)),
    ((0.334, 0.016), (0.193, 0.027), (0.845, 0.005)),
)

# Tables 5 (LVOT: ResNet-50, EfficientNet-B0) and 6 (Object-CXR: ResNet-34,
# EfficientNet-B0): (ResNet mean, std), (EfficientNet mean, std), DoM
Consistency = tuple[Pair, Pair, float]
TABLE_5: dict[str, Consistency] = _rows(
    ((0.106, 0.058), (0.218, 0.042), 0.112),
    ((0.152, 0.075), (0.318, 0.049), 0.166),
    ((0.325, 0.075), (0.453, 0.035), 0.128),
    ((0.547, 0.020), (0.569, 0.027), 0.022),
    ((0.497, 0.140), (0.778, 0.020), 0.281),
    ((0.600, 0.054), (0.620, 0.010), 0.020),
    ((0.479, 0.139), (0.754, 0.041), 0.275),
    ((0.611, 0.051), (0.634, 0.018), 0.023),
    ((0.430, 0.185), (0.728, 0.033), 0.298),
    ((0.602, 0.061), (0.607, 0.020), 0.005),
)
TABLE_6: dict[str, Consistency] = _rows(
    ((0.663, 0.013), (0.617, 0.036), 0.046),
    ((0.640, 0.053), (0.595, 0.045), 0.045),
    ((0.645, 0.012), (0.784, 0.005), 0.139),
    ((0.545, 0.020), (0.771, 0.005), 0.226),
    ((0.852, 0.000), (0.857, 0.010), 0.005),
    ((0.843, 0.005), (0.856, 0.002), 0.013),
    ((0.851, 0.006), (0.850, 0.000), 0.001),
    ((0.839, 0.010), (0.851, 0.008), 0.011),
    ((0.853, 0.003), (0.863, 0.002), 0.009),
    ((0.845, 0.005), (0.859, 0.007), 0.014),
)
