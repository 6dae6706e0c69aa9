"""Slow, literal references the fast code is compared with, one module per idea.

Each function follows the definition as written (loops over pixels, patches, objects or
detections), never the library's code: ``maps`` (NormGrad, Grad-CAM, saliency from layer
maps), ``pointing`` (points, regions, the Pointing Game), ``distance``, ``peaks``,
``deletion``, and the modules new methods and metrics add beside them.
"""
