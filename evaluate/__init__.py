"""Evaluation of students and teachers: features, kNN, linear probe, agreement, export, plots."""
