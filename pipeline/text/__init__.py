"""Text stage: normalisation, segmentation, masking."""
