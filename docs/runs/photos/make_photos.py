"""The photo folders the photo runs train and are measured on, from the photos scikit-learn
and scikit-image bundle (python make_photos.py OUT): OUT/train/ (china, astronaut, coffee,
rocket, camera; camera is grey), OUT/test/ (chelsea, flower: the held-out figure of every
epoch) and OUT/bench/ (chelsea, flower and chelsea made grey: acnkit bench photos)."""
import sys
from pathlib import Path

import skimage.data as sd
from PIL import Image
from sklearn.datasets import load_sample_images

out = Path(sys.argv[1])
china, flower = load_sample_images().images
sets = {"train": {"china": china, "astronaut": sd.astronaut(), "coffee": sd.coffee(),
                  "rocket": sd.rocket(), "camera": sd.camera()},
        "test": {"chelsea": sd.chelsea(), "flower": flower},
        "bench": {"chelsea": sd.chelsea(), "flower": flower}}
for folder, photos in sets.items():
    (out / folder).mkdir(parents=True, exist_ok=True)
    for name, pixels in photos.items():
        Image.fromarray(pixels).save(out / folder / f"{name}.png")
Image.fromarray(sd.chelsea()).convert("L").save(out / "bench" / "chelsea-grey.png")
