"""The evaluation protocols: loading pipelines, the paper protocol's pieces and a job's prompts (dataset x
protocol)."""
