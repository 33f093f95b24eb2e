"""Models: datasets, honest training and evaluation, and the model artifacts the processor loads."""
