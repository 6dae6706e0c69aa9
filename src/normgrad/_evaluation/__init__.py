"""The evaluation runner: many explainers, one data set, the paper's protocol.

- ``runner``: :func:`evaluate`, one pass over the data scoring every method.
- ``result``: :class:`EvaluationResult`, its rows and per-image records, as Markdown or CSV.
- ``records``: the table made from the records, and the file a run writes and resumes.
- ``distributed``: several processes (torch.distributed), :class:`ShardSampler`.
"""
