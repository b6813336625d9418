"""report: the pipeline's outputs in one self-contained report.html and a report.md (see
`build.py`); sections are built as data once (`document.py`) and rendered to both formats."""
