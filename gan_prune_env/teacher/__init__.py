"""Training Pix2Pix/CycleGAN teachers (the networks that get pruned) from scratch.

``train_teacher(TeacherTrainConfig(...), out_dir)`` runs the reference recipe with TensorBoard
logging and resumable, atomically written checkpoints; ``python -m gan_prune_env.train_teacher``
is its command line.
"""

from gan_prune_env.teacher.base import GANTrainer, set_requires_grad
from gan_prune_env.teacher.config import TeacherTrainConfig
from gan_prune_env.teacher.cyclegan import CycleGANTrainer
from gan_prune_env.teacher.evaluate import mean_l1
from gan_prune_env.teacher.image_pool import ImagePool
from gan_prune_env.teacher.images import image_grid, save_png
from gan_prune_env.teacher.loop import TEACHER_FILE, TRAINERS, build_trainer, train_teacher
from gan_prune_env.teacher.pix2pix import Pix2PixTrainer

__all__ = [
    "TEACHER_FILE", "TRAINERS", "CycleGANTrainer", "GANTrainer", "ImagePool", "Pix2PixTrainer",
    "TeacherTrainConfig", "build_trainer", "image_grid", "mean_l1", "save_png",
    "set_requires_grad", "train_teacher",
]
