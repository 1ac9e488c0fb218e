"""Makes the metric module part of the installed package; `evaluate.load(<this folder>)` reads the .py beside it."""
