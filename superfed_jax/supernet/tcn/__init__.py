"""The elastic temporal convolutional network (TCN) family of the text tasks (docs/families.md)."""
