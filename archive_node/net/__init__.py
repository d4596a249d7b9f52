"""The network layer, the only package that imports pynetdicom: the server and its supervisor,
the SCP handlers, the retrieve and commitment SCPs, the bundled client, the hand-packed wire
encoders (wire/) and every replacement of pynetdicom internals (patches/)."""
