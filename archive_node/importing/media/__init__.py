"""Non-DICOM media (JPEG photos, MP4 videos, PDF documents): what each file is, read from its
own headers, and whether DICOM can carry it unchanged."""
