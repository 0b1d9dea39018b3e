"""What crosses a pod boundary, defined once and used by both sides.

The operator, the optimization Job and the serving pods' verifier are separate processes that
only meet through the artifact store and the Pod status. Everything they must agree on lives here:
the paths inside pods (`layout`), the model formats and quantization modes the Job accepts
(`formats`), the SHA256SUMS file of a published version (`sums`), the classes of failure with
their exit codes (`failures`) and the one-line summary the Job leaves as its termination message
(`summary`). Imports only pydantic and the standard library, so every side may depend on it.
"""
