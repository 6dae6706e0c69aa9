"""The evaluation runner: many explainers, one data set, the paper's protocol.

- ``runner``: [`evaluate`][normgrad.evaluate], one pass over the data scoring every method.
- ``result``: [`EvaluationResult`][normgrad.EvaluationResult] and its rows, as Markdown or CSV.
"""
