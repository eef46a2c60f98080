"""Training: datasets, augmentation, the classifier and GAN loops, evaluation reports."""
