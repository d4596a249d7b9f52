"""What the tests share: DICOM objects, nodes in process and as processes, clients and peers."""
