"""Survey scale: LAMOST catalogue tools, spectrum downloads and distributed bulk classification.

Usage: ``python -m survey.cli {catalogue,download,classify-survey} --help``.

- :mod:`survey.catalogue`: streaming split of a LAMOST catalogue by MK class group into
  Parquet, and stratified obsid samples (pyarrow, bounded memory).
- :mod:`survey.otype`: O-type spectra (LAMOST FITS + JHC atlas) preprocessed for the GAN.
- :mod:`survey.download`: concurrent, resumable, verified downloads by obsid.
- :mod:`survey.bulk`: classification of a folder or list of spectra on Dask distributed,
  written as partitioned Parquet; a re-run skips what is done.
"""
