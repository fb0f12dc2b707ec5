"""Install mpi_landscape and the models package: `pip install -e .[test]`.

The repository's `models/` folder is installed as `mpi_landscape_models`, so that
a user's own `models` package never shadows it (nor it theirs).
"""

import re

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "(.+?)"', open("mpi_landscape/__init__.py", encoding="utf-8").read())[1]

setup(
    name="mpi_landscape",
    version=VERSION,
    description="Loss landscapes of neural networks (Li et al., ICLR 2018) computed over MPI ranks",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=[*find_packages(include=["mpi_landscape", "mpi_landscape.*"]), "mpi_landscape_models"],
    package_dir={"mpi_landscape_models": "models"},
    package_data={"mpi_landscape.views": ["web_page.html", "web_page.js"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "mpi4py>=3.1",
        "h5py>=3.6",
        "numpy>=1.24",
        "matplotlib>=3.7",
        "vtk>=9.2",
        "tqdm>=4.60",
        "plotly>=5.0",  # the interactive page (python -m mpi_landscape.view): plotly.js ships inside it
    ],
    extras_require={
        # The MPICH wheel gives a working mpirun on a single machine; clusters build
        # mpi4py against the site's MPI instead.
        "mpich": ["mpich"],
        "test": ["pytest>=7", "mpich", "selenium>=4.11", "ipython>=8"],
        # Hugging Face models (language-model landscapes, the language-model tests)
        "transformers": ["transformers>=4.40"],
    },
)
