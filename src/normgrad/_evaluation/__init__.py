"""The evaluation runner: many explainers, one data set, the paper's protocol.

- ``runner``: :func:`evaluate`, one pass over the data scoring every method.
- ``result``: :class:`EvaluationResult` and its rows, as Markdown or CSV.
"""
