"""Spanner: federated DICOM query/retrieve across several PACS.

This package holds the server process and its configuration API (spanner
configurations, DICOM nodes and the source mappings between them). The
fan-out engine, the DIMSE/DICOMweb listeners and the audit log writer come
later; their RPCs answer UNIMPLEMENTED until then.
"""
