"""DeepSight command-line glue. The model code lives in `modeling_deepsight/` (Hub-portable)."""

__version__ = "0.1.0"
