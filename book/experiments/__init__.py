"""The chapters' experiments as reusable pieces: models, data, training and evaluation wired together."""
