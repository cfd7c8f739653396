"""DICOM processing in Correlation: batch and patient groups, and alerts on them.

* :mod:`.keys` reads a processing step from an event and derives the ids of
  its batch and patient (keyed hashes: no patient id leaves the event);
* :mod:`.rollups` is the engine's part that keeps BATCH and PATIENT groups
  and links them;
* :mod:`.alerts` decides when a correlation is stuck or an error rate is
  over its threshold;
* :mod:`.state` carries what is written and read back; :mod:`.store` writes
  and reads it.
"""
