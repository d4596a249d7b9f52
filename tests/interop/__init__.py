"""Interoperability tests: the node against DCMTK, peers nobody here wrote."""
