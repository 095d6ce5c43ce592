"""boxweight: per-box class weights for object detection datasets."""

__version__ = "0.1.0"
