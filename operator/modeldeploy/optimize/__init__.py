"""The optimizer behind `modeldeploy optimize`: fetch a trained model, prune, quantize, gate, publish.

It is the entry point of the optimization Job that the operator creates, and it runs just as well on
a laptop. TensorFlow is imported only by the modules that need it (convert, prune, quantize,
evaluate, pipeline, reference), never when the CLI registers itself, so `modeldeploy render` and the
operator image work without the `optimize` extra.
"""
