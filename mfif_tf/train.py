"""Trains MFIF-GAN: `python -m mfif_tf.train --flagfile=configs/paper.flags --workdir=DIR`.

Restarting with the same --workdir resumes from its latest checkpoint; flags that change the
networks (--preset and the size overrides, --use_se, --branches) must be those of the run
in it (checked against its config.json before anything changes).
"""

from __future__ import annotations


from absl import app, flags

from data_pipeline import SYNTHESIS_METHODS
from mfif_tf.cli import check_workdir, fail, parse_flags, quiet_native_stderr

from mfif_tf import config as config_lib

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard logs and the config.")
flags.DEFINE_enum("preset", "paper", sorted(config_lib.PRESETS), "Network size preset.")
flags.DEFINE_integer("stem_channels", None, "Override: channels of the 7x7 stem conv.")
flags.DEFINE_list("down_channels", None, "Override: channels of the two stride-2 convs.")
flags.DEFINE_integer("num_blocks", None, "Override: SE-ResNet blocks per branch.")
flags.DEFINE_integer("se_reduction", None, "Override: SE reduction ratio.")
flags.DEFINE_bool("use_se", True, "SE blocks in the residual blocks (False: 'no SE' ablation).")
flags.DEFINE_enum("branches", "six", ["six", "two"], "'two': grey two-branch ablation.")
flags.DEFINE_enum("gan_loss", "wgan_gp", ["wgan_gp", "lsgan"], "Adversarial loss (eqs. 1-2 or LS).")
flags.DEFINE_enum("reconstruction", "l1", ["l1", "bce"], "Reconstruction loss (eq. 4 or BCE).")
flags.DEFINE_float("lambda_gp", 10.0, "Weight of the gradient penalty, eq. 5 (0: 'no gp').")
flags.DEFINE_float("lambda_rec", 10.0, "Weight of the reconstruction loss, eq. 6.")
flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate of G and D.")
flags.DEFINE_float("beta_1", 0.5, "Adam beta_1.")
flags.DEFINE_float("beta_2", 0.999, "Adam beta_2.")
flags.DEFINE_float("decay_fraction", 0.5, "Fraction of adversarial steps with linear decay.")
flags.DEFINE_float("warmup_decay_fraction", 0.0,
                   "Fraction of the supervised warm-up steps with linear decay to zero.")
flags.DEFINE_integer("critic_steps", 5, "Critic updates per generator update.")
flags.DEFINE_integer("batch_size", 1, "Global batch size.")
flags.DEFINE_integer("num_steps", 200000, "Generator steps in total (warm-up included).")
flags.DEFINE_integer("warmup_steps", 0, "Supervised L1-only generator steps before the GAN phase.")
flags.DEFINE_integer("seed", 0, "Seed of data order, synthesis and initialisation.")
flags.DEFINE_enum("mixed_precision", "none", ["none", "float16", "bfloat16"], "Mixed precision.")
flags.DEFINE_bool("jit_compile", False, "Compile the steps with XLA.")
flags.DEFINE_enum("distribution", "auto", ["auto", "default", "mirrored"],
                  "auto: MirroredStrategy when several GPUs are visible.")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (testing).")
flags.DEFINE_integer("log_every", 50, "Steps between progress lines and scalar summaries.")
flags.DEFINE_integer("image_every", 1000, "Steps between image summaries.")
flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
flags.DEFINE_string("init_checkpoint", "", "Checkpoint to start from when the workdir has none.")
flags.DEFINE_enum("data_source", "embedded", ["embedded", "folder", "voc", "plain", "tfds"],
                  "Training data: embedded sample images, a mask folder, VOC 2012, plain images, tfds.")
flags.DEFINE_string("data_dir", "", "Folder of the data source (mask folder, VOC root, images).")
flags.DEFINE_list("extra_data_dirs", [], "More mask folders added to the training split.")
flags.DEFINE_string("tfds_data_dir", "", "tfds data_dir for --data_source=tfds.")
flags.DEFINE_integer("image_size", 256, "Training image size (multiple of 4).")
flags.DEFINE_enum("crop", "center", ["center", "random"], "center: the paper's crop 178 + resize.")
flags.DEFINE_integer("center_crop_size", 178, "Centre crop before resizing (crop=center).")
flags.DEFINE_integer("resize_shorter", 288, "Shorter side before a random crop (crop=random).")
flags.DEFINE_enum("synthesis", "alpha_matte",
                  list(SYNTHESIS_METHODS),
                  "Eqs. 10-11 (alpha-matte), eqs. 10-11 with the hidden background filled "
                  "(no dark seam at the boundary), or eqs. 12-13 ('no alpha' ablation).")
flags.DEFINE_float("sigma", 1.0, "Gaussian blur sigma of the synthesis (eq. 9).")
flags.DEFINE_list("sigma_range", None, "lo,hi: draw sigma per sample from U[lo, hi].")
flags.DEFINE_bool("flip", True, "Random flips.")
flags.DEFINE_bool("swap_sources", False, "Swap I_A/I_B (F -> 1 - F) in half the samples.")
flags.DEFINE_integer("shuffle_buffer", 256, "Shuffle buffer of the input pipeline.")


def config_from_flags() -> config_lib.TrainConfig:
    overrides = {}
    for name in ("stem_channels", "num_blocks", "se_reduction"):
        if FLAGS[name].value is not None:
            overrides[name] = FLAGS[name].value
    if FLAGS.down_channels:
        if len(FLAGS.down_channels) != 2:
            raise ValueError("--down_channels needs two integers")
        overrides["down_channels"] = tuple(int(c) for c in FLAGS.down_channels)
    sigma_range = None
    if FLAGS.sigma_range:
        if len(FLAGS.sigma_range) != 2:
            raise ValueError("--sigma_range needs two numbers: lo,hi")
        sigma_range = tuple(float(s) for s in FLAGS.sigma_range)
        if not 0 < sigma_range[0] <= sigma_range[1]:
            raise ValueError(f"--sigma_range must satisfy 0 < lo <= hi, got {FLAGS.sigma_range}")
    model = config_lib.model_config(
        FLAGS.preset, use_se=FLAGS.use_se, branches=FLAGS.branches, **overrides)
    return config_lib.TrainConfig(
        model=model,
        loss=config_lib.LossConfig(gan=FLAGS.gan_loss, reconstruction=FLAGS.reconstruction,
                                   lambda_gp=FLAGS.lambda_gp, lambda_rec=FLAGS.lambda_rec),
        optim=config_lib.OptimConfig(learning_rate=FLAGS.learning_rate, beta_1=FLAGS.beta_1,
                                     beta_2=FLAGS.beta_2, decay_fraction=FLAGS.decay_fraction,
                                     warmup_decay_fraction=FLAGS.warmup_decay_fraction,
                                     critic_steps=FLAGS.critic_steps),
        data=config_lib.DataConfig(
            source=FLAGS.data_source, data_dir=FLAGS.data_dir,
            extra_dirs=tuple(FLAGS.extra_data_dirs), tfds_data_dir=FLAGS.tfds_data_dir,
            image_size=FLAGS.image_size, crop=FLAGS.crop,
            center_crop_size=FLAGS.center_crop_size, resize_shorter=FLAGS.resize_shorter,
            synthesis=FLAGS.synthesis, sigma=FLAGS.sigma, sigma_range=sigma_range,
            flip=FLAGS.flip, swap_sources=FLAGS.swap_sources, shuffle_buffer=FLAGS.shuffle_buffer),
        batch_size=FLAGS.batch_size, num_steps=FLAGS.num_steps, warmup_steps=FLAGS.warmup_steps,
        seed=FLAGS.seed, mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile,
        distribution=FLAGS.distribution, log_every=FLAGS.log_every,
        image_every=FLAGS.image_every, checkpoint_every=FLAGS.checkpoint_every,
        keep_checkpoints=FLAGS.keep_checkpoints, init_checkpoint=FLAGS.init_checkpoint)




def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.workdir:
        fail("--workdir is required")
    try:
        config = config_from_flags()
        config.validate()
        check_workdir(FLAGS.workdir, config.to_dict()["model"])
    except ValueError as e:
        fail(str(e))
    # After validation: bad flags fail fast. TensorFlow's C++ runtime prints notes while it
    # loads and starts (CPU features, GPU probing); silenced, so that a data error that
    # follows stands alone.
    with quiet_native_stderr():
        import tensorflow as tf

        if FLAGS.cpu_devices > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
        tf.config.list_logical_devices("CPU")
        import data_pipeline.pipeline  # noqa: F401 (loads tf.data's libraries here)
        from data_pipeline.readers import DataError
        from mfif_tf import train_lib

    try:
        train_lib.train_and_evaluate(config, FLAGS.workdir)
    except DataError as e:
        fail(str(e))


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
