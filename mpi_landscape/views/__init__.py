"""Figures and VTK export from the files the runs write (never torch, never mpi4py)."""
