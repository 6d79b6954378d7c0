"""Students of GAN Compression's layout (``gan_prune_env.students``): the widest separable U-Net
within a budget, fresh or narrowed from a distilled one, and its checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from gan_prune_env.checkpoint import load_generator, make_checkpoint
from gan_prune_env.models import DiscriminatorConfig, GeneratorConfig, build_generator, separable_unet
from gan_prune_env.pruning import count_macs
from gan_prune_env.students import (
    fresh_separable_student, narrowed_separable_student, separable_config, widest_separable,
)

TEACHER = GeneratorConfig(arch="unet_auto", ngf=16, image_size=32)
EXAMPLE = torch.zeros(1, 3, 32, 32)


def test_the_separable_student_is_the_widest_that_fits_the_budget():
    """The student gets the MACs the budget allows, no more (a separable U-Net one channel
    wider does not fit) and no fewer."""
    teacher_macs = count_macs(separable_unet(3, 3, 5, 16), EXAMPLE) * 3
    for share in (0.05, 0.1, 0.25):
        cap = share * teacher_macs
        student = widest_separable(TEACHER, cap, EXAMPLE)
        assert student.separable and 1 <= student.ngf < 16
        assert count_macs(build_generator(student), EXAMPLE) <= cap
        assert count_macs(separable_unet(3, 3, 5, student.ngf + 1), EXAMPLE) > cap
    assert widest_separable(TEACHER, 1e12, EXAMPLE).ngf == 16  # never wider than the teacher
    with pytest.raises(ValueError, match="no separable U-Net fits"):
        widest_separable(TEACHER, 10, EXAMPLE)


def test_a_fresh_student_is_seeded_and_a_narrowed_one_keeps_its_source_weights():
    cap = 0.3 * count_macs(build_generator(separable_config(TEACHER, 16)), EXAMPLE)
    a, config = fresh_separable_student(TEACHER, cap, EXAMPLE, seed=3)
    b, _ = fresh_separable_student(TEACHER, cap, EXAMPLE, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    source_config = separable_config(TEACHER, 16)
    source = build_generator(source_config, seed=5)
    narrowed, narrowed_config = narrowed_separable_student(source, source_config, TEACHER, cap,
                                                           EXAMPLE)
    assert narrowed_config == config and narrowed_config.ngf < 16
    # the same network as the fresh student, with weights taken from the source's
    assert [p.shape for p in narrowed.parameters()] == [p.shape for p in a.parameters()]
    stem = source.model.model[0].weight
    assert any(torch.equal(narrowed.model.model[0].weight[0], row) for row in stem)
    with pytest.raises(ValueError, match="student: separable"):  # not a separable U-Net
        narrowed_separable_student(build_generator(TEACHER), TEACHER, TEACHER, cap, EXAMPLE)


def test_a_narrowed_student_keeps_the_channels_its_ranking_names():
    """``importance`` reaches the narrowing: ranked by norm scales (network slimming), the
    channels with the largest scales survive, not those with the largest filters."""
    source_config = separable_config(TEACHER, 16)
    source = build_generator(source_config, seed=5)
    with torch.no_grad():
        for norm in (m for m in source.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.weight.copy_(torch.arange(norm.num_features, dtype=torch.float32))
    cap = 0.3 * count_macs(source, EXAMPLE)
    by_scale, config = narrowed_separable_student(source, source_config, TEACHER, cap, EXAMPLE,
                                                  importance="norm_scale")
    stem = source.model.model[0].weight
    assert torch.equal(by_scale.model.model[0].weight, stem[16 - config.ngf:])
    by_l1, _ = narrowed_separable_student(source, source_config, TEACHER, cap, EXAMPLE)
    assert not torch.equal(by_l1.model.model[0].weight, by_scale.model.model[0].weight)


def test_a_wider_start_may_exceed_the_teacher_and_narrows_to_the_same_student():
    """``width`` lifts the cap at the teacher's ngf (the budget still caps the MACs), and the
    wider student narrows to the same network as the teacher-width one at a small budget."""
    separable_macs = count_macs(build_generator(separable_config(TEACHER, 16)), EXAMPLE)
    roomy, small = 10 * separable_macs, 0.3 * separable_macs
    assert fresh_separable_student(TEACHER, roomy, EXAMPLE, 0, width=1.5)[1].ngf == 24
    assert fresh_separable_student(TEACHER, roomy, EXAMPLE, 0, width=0.5)[1].ngf == 8
    assert fresh_separable_student(TEACHER, roomy, EXAMPLE, 0)[1].ngf == 16
    wide, wide_config = fresh_separable_student(TEACHER, roomy, EXAMPLE, 0, width=1.5)
    narrowed, config = narrowed_separable_student(wide, wide_config, TEACHER, small, EXAMPLE)
    assert config == fresh_separable_student(TEACHER, small, EXAMPLE, 0)[1] and config.ngf < 16
    assert narrowed.eval()(EXAMPLE).shape == EXAMPLE.shape
    with pytest.raises(ValueError, match="width must be > 0"):
        fresh_separable_student(TEACHER, roomy, EXAMPLE, 0, width=0)


def test_a_separable_generator_round_trips_through_a_checkpoint():
    """A run's pruned.pt rebuilds a separable student from its embedded config alone."""
    config = separable_config(TEACHER, 6)
    generator = build_generator(config, seed=1).eval()
    payload = make_checkpoint("pruned", "pix2pix", {"generator": generator}, config,
                              DiscriminatorConfig())
    loaded = load_generator(payload)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), generator(x))
    with pytest.raises(ValueError, match="U-Net layout"):
        GeneratorConfig(arch="resnet_6blocks", separable=True)
