"""The book's models, one module per architecture, each built from minigrad.nn layers and checked against a
PyTorch twin in tests/."""
