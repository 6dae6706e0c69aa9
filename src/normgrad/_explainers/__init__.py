"""The explainers: one module per family, each built on one pass of ``normgrad._model``.

- ``base``: the [`Explainer`][normgrad.Explainer] protocol, what it reads from the shared
  pass, [`Explanation`][normgrad.Explanation] and its one builder.
- ``normgrad``: NormGrad (single and multi-layer).
- ``shared``: [`explain_shared`][normgrad.explain_shared], many explainers of one batch
  from shared passes.
- ``gradients``: Gradient, Input x Gradient, Guided Backpropagation (input gradients).
- ``gradcam``: Grad-CAM and Guided Grad-CAM (one layer).
- ``perturbation``: SmoothGrad and Integrated Gradients (many inputs per sample).
- ``occlusion``, ``rise``: Occlusion and RISE (perturbed inputs, scores without a
  gradient).
- ``center``: the centre map (no model).
"""
