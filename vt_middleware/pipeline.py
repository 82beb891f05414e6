"""Seed-compatible names: ``from vt_middleware.pipeline import OpenAITrainer, TrainingPipeline``."""

from .evolve.pipeline import TrainingPipeline
from .train import BaseTrainer, LocalTrainer, OpenAITrainer

__all__ = ["BaseTrainer", "LocalTrainer", "OpenAITrainer", "TrainingPipeline"]
