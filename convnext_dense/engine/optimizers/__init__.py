from .layer_decay_optimizer_constructor import LearningRateDecayOptimizerConstructor

__all__ = ['LearningRateDecayOptimizerConstructor']
