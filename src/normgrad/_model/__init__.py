"""Everything that touches the model, and the one owner of hooks.

- ``layers``: finding layers by dotted name or as modules.
- ``hooks``: hook handles and the eval mode, always taken off / restored.
- ``guided``: guided ReLUs for Guided Backpropagation (a thread-local torch function mode).
- ``targets``: the ``target`` argument resolved once into class indices or a score function.
- ``layouts`` and ``layout_detection``: layer outputs laid out channels first or last, or
  as tokens, read as ``(N, C, *spatial)``.
- ``capture``: the one forward and backward pass every gradient method is built on.

Nothing outside this package registers a hook or changes a module's mode.
"""
