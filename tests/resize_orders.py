"""Pillow's Lanczos resize in the order Pillow 12 runs it (across, then down), for tests of what
another machine's Pillow would make of the same image: Pillow 13 resizes some tall sources down first."""

import contextlib

from PIL import Image

from datasets.images import resize_fingerprint


@contextlib.contextmanager
def across_first_resize(monkeypatch):
    """Within the block, every two-axis resize runs as two one-axis resizes, across first."""
    one_pass = Image.Image.resize

    def across_first(self, size, resample=None, *args, **kwargs):
        if size[0] == self.width or size[1] == self.height:
            return one_pass(self, size, resample, *args, **kwargs)
        return one_pass(one_pass(self, (size[0], self.height), resample), size, resample)

    with monkeypatch.context() as patched:
        patched.setattr(Image.Image, "resize", across_first)
        resize_fingerprint.cache_clear()
        try:
            yield
        finally:
            resize_fingerprint.cache_clear()
