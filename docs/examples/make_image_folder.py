"""Write scikit-learn's handwritten digits as PNG files in ImageFolder layout, a stand-in for your
own images: ``ROOT/train/<digit>/<n>.png`` and ``ROOT/val/<digit>/<n>.png`` (the quickstart's fixed
stratified 80/20 split), 8x8 pixels, grey as RGB.

    python docs/examples/make_image_folder.py my_images
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="the folder to write (train/ and val/ inside it)")
    root = Path(p.parse_args().root)
    digits = load_digits()
    images = (digits.images * (255 / 16)).round().astype(np.uint8)
    train, val = train_test_split(np.arange(len(images)), test_size=0.2, stratify=digits.target, random_state=0)
    for split, indices in (("train", train), ("val", val)):
        for i in indices:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).convert("RGB").save(folder / f"{i}.png")
    print(f"{root}: {len(train)} training and {len(val)} validation images of 10 classes")


if __name__ == "__main__":
    main()
