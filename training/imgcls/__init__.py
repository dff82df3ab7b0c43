"""Image-classification library behind train.py, inference.py and serve.py.

It ships with the training source (``sagemaker_submit_directory``) and inside every
model artifact (``code/imgcls``), so it depends on torch, torchvision and Pillow only.
"""

from imgcls._torchvision import ensure_importable

ensure_importable()
