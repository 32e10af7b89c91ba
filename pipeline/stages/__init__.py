"""One module per dvc.yaml stage; each reads params.yaml (validated) and writes its typed artifacts."""
