"""The only package that talks to the Kubernetes API server (`client`), and the table of the kinds
the operator touches (`kinds`, pure data that the pure layers may import too).

Import `modeldeploy.k8s.client` explicitly: this file imports nothing, so importing the table
never loads the kubernetes client.
"""
