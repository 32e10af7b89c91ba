"""Mind's Mirror, reproducible: the pipeline package (one CLI, one module per stage; see dvc.yaml)."""
