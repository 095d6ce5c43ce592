from setuptools import setup

setup()  # metadata lives in pyproject.toml; Dataflow --setup_file needs this file
