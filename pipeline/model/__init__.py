"""Model stage: features, training, calibration, evaluation, registry, retraining."""
