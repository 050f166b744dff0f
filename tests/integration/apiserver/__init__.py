"""A real kube-apiserver (+ etcd) from the offline artifact bundle, for integration tests.

``fixture.kube_api`` is the pytest entry point; ``server.running`` and
``bundle.locate_bundle`` work without pytest. See README.md here.
"""
