"""The evaluation runner: many explainers, one data set, the paper's protocol.

- ``runner``: [`evaluate`][normgrad.evaluate], one pass over the data scoring every method.
- ``scoring``: one batch: every explainer's maps, scored into per-image records.
- ``result``: [`EvaluationResult`][normgrad.EvaluationResult], its rows and per-image
  records, as Markdown or CSV.
- ``records``: the table made from the records, and the file a run writes and resumes.
- ``distributed``: several processes (torch.distributed),
  [`ShardSampler`][normgrad.ShardSampler].
"""
