"""Figures (matplotlib) and VTK export drawn from surface files; never imports torch or mpi4py."""
