"""Serving: what a replica does with a request once it holds a loaded model version.

`protocols` turns request bodies into `Batch`es and predictions into response bodies for the
Open Inference Protocol v2, the MLflow scoring protocol and plain JSON; `batching` runs the
model on one worker thread, merging concurrent requests into batches when the model allows it.
"""
