"""`archive-node import`: photos, videos and PDFs read from their own headers (media/), wrapped
into the DICOM instance each becomes (wrapping), and kept as a C-STORE keeps them (importer)."""
