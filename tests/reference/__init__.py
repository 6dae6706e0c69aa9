"""Slow, literal references the fast code is compared with, one module per idea.

Each function follows the definition as written (loops over pixels, patches, objects or
detections), never the library's code: ``maps`` (NormGrad, Grad-CAM, saliency from layer
maps), ``layers`` and ``tokens`` (whole models, token layers), ``pointing`` (points,
regions, the Pointing Game), ``distance``, ``peaks``, ``shapes``, ``detection`` (matching,
FROC), ``regions``, ``deletion``, ``statistics``, ``checksum``, ``seeds``, ``smoothgrad``,
and the modules new methods and metrics add beside them. Test modules import them from
here; no test module defines a reference or imports another test module
(``tests/test_repository.py``).
"""
