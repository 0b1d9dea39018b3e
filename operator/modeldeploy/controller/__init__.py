"""The operator: kopf handlers that run one level-based reconcile per ModelDeployment.

`handlers` wires kopf's events to `reconcile`, which gathers what exists (`observe`, `views`),
decides purely (`plan`: which artifact serves and which children exist; `status`: conditions,
phase, printer strings, Events), and applies what differs (`drift`). `builders` turn the spec into
manifests; `config` is the operator's settings; `metrics` its Prometheus endpoint.
"""
