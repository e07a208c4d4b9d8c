"""Digits and the model: datasets, PNG decoding and preprocessing, the CNN and its weights."""
