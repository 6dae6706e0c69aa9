"""The evaluation runner: many explainers, one data set, the paper's protocol.

- ``runner``: [`evaluate`][normgrad.evaluate], one pass over the data scoring every method.
- ``arguments``: its arguments checked, and the run's settings.
- ``scoring``: one batch: every explainer's maps, the regions prepared once, scored into
  per-image records.
- ``plugins``: the metrics reported beside the Pointing Game, one module each, registered
  once (their columns, record fields, scoring and accumulators).
- ``record``, ``fields``, ``record_fields``: a record, its fields, and a line of a records
  file written and read back.
- ``result``: [`EvaluationResult`][normgrad.EvaluationResult], its rows and per-image
  records, as Markdown or CSV.
- ``records``: the table made from the records, and the file a run writes and resumes.
- ``fingerprint``: what makes the maps (the explainers' arguments, the model's weights),
  compared on resume and between ranks; explainers belong to the model evaluated.
- ``data``: what a run reads from its data: batches, labels, ids, their order and count.
- ``distributed``: several processes (torch.distributed),
  [`ShardSampler`][normgrad.ShardSampler].
"""
