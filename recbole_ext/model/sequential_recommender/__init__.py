"""One extension model per file; file name = ``ModelName.lower()``. Looked up via ``recbole_ext.registry``."""
