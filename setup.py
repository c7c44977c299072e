"""Installs mfif_tf, data_pipeline and export."""

from setuptools import find_packages, setup

setup(
    name="mfif-tf",
    version="0.1.0",
    description=(
        "MFIF-GAN multi-focus image fusion in TensorFlow 2 / Keras 3: training, "
        "fusion, TF Serving and TFLite export, evaluation."
    ),
    python_requires=">=3.11",
    packages=find_packages(include=["mfif_tf", "mfif_tf.*", "data_pipeline", "data_pipeline.*", "export", "export.*"]),
    include_package_data=True,
    package_data={
        "mfif_tf": ["pretrained/*", "pretrained/coarse_to_fine/*", "pretrained/g_side/*",
                    "pretrained/six_branch/*", "pretrained/small/*", "configs/*"],
        "data_pipeline": ["dummy_data/**/*", "**/dummy_data/**/*", "**/*.txt"],
    },
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.0",
        "tensorflow-datasets>=4.9",
        "importlib_resources",
        "absl-py",
        "tensorboard",
        "numpy",
        "scipy",
        "scikit-image",
        "opencv-python-headless",
        "pillow",
        "tifffile",
        "matplotlib",
        "tqdm",
        "ai-edge-litert",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "dill"],
        # Beam builds of the tfds datasets and `python -m export.beam_fuse`; mlcroissant for
        # the `tfds build` command, which imports it.
        "beam": ["apache-beam>=2.60,<3", "mlcroissant"],
    },
    entry_points={
        "console_scripts": [
            "mfif-fuse=mfif_tf.fuse:run",
            "mfif-train=mfif_tf.train:run",
            "mfif-evaluate=mfif_tf.evaluate:run",
            "mfif-export=export.export:run",
        ]
    },
)
